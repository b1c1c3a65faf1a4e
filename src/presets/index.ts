// Package presets makes banger's own root filesystems from distribution packages, with no
// download beyond Debian's archive: `busybox` (busybox-static plus the host's dropbear for
// ssh; tiny, boots in seconds), `debian` and `debian-dev` (debootstrap of Debian stable with
// openssh-server, run as root, .debs cached in <cacheDir>/debootstrap between builds). Each
// preset yields a `docker export`-style tar; turning it into an image (agent, ext4, store) is
// the daemon's job via rootfs. It does not own kernels, image storage, starting the ssh
// server (daemon/ssh-server.ts), or the host packages it needs (busybox-static, dropbear-bin,
// debootstrap).
import type { Readable } from "node:stream";
import { invalidArgument } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { busyboxRootfsTar } from "./busybox.ts";
import { debianRootfsTar } from "./debian.ts";
import { DEBIAN_DEV_PACKAGES, DEBIAN_PACKAGES } from "./debian-files.ts";

export const PRESETS = {
  busybox: { description: "busybox-static: a shell and core tools, dropbear for ssh; boots in seconds", distro: "busybox" },
  debian: { description: "Debian 12 (bookworm) minbase: bash, git, curl, ssh, sudo; user dev", distro: "debian" },
  "debian-dev": { description: "debian plus build-essential, python3, nodejs, make, pkg-config", distro: "debian" },
} as const;

export type PresetName = keyof typeof PRESETS;

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

export function validatePreset(name: string): PresetName {
  if (!Object.hasOwn(PRESETS, name)) throw invalidArgument(`unknown preset ${JSON.stringify(name)}`, `choose one of: ${presetNames().join(", ")}`);
  return name as PresetName;
}

export interface PresetOptions {
  /** The presets' own cache directory (the daemon passes <root>/cache/presets). */
  cacheDir: string;
  signal?: AbortSignal;
  progress?: Progress;
  /** Debian mirror for the debian presets; default: the host's apt mirror, else deb.debian.org. */
  mirror?: string;
}

/** The preset's root filesystem as an uncompressed tar stream. */
export async function presetRootfsTar(preset: PresetName, opts: PresetOptions): Promise<Readable> {
  switch (preset) {
    case "busybox":
      return busyboxRootfsTar({ progress: opts.progress });
    case "debian":
      return debianRootfsTar({ ...opts, packages: DEBIAN_PACKAGES });
    case "debian-dev":
      return debianRootfsTar({ ...opts, packages: DEBIAN_DEV_PACKAGES });
  }
}

/** Packages each debian preset installs on top of debootstrap's minbase. */
export function presetPackages(preset: PresetName): readonly string[] {
  return preset === "debian" ? DEBIAN_PACKAGES : preset === "debian-dev" ? DEBIAN_DEV_PACKAGES : [];
}

export { busyboxRootfsTar, BUSYBOX_PATH, DROPBEAR_PATH } from "./busybox.ts";
export { DEBIAN_SUITE, DEV_USER, WORKSPACE_DIR } from "./debian-files.ts";
export { detectMirror } from "./mirror.ts";
