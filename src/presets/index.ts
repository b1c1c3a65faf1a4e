// Package presets makes banger's own root filesystems from distribution packages, with no
// download beyond Debian's archive: `busybox` (busybox-static; tiny, boots in seconds),
// `debian` and `debian-dev` (debootstrap). Each preset yields a `docker export`-style tar;
// turning it into an image (agent, ext4, store) is the daemon's job via rootfs.
import type { Readable } from "node:stream";
import { invalidArgument } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { busyboxRootfsTar } from "./busybox.ts";

export const PRESETS = {
  busybox: { description: "busybox-static: a shell and core tools; boots in seconds", distro: "busybox" },
} as const;

export type PresetName = keyof typeof PRESETS;

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

export function validatePreset(name: string): PresetName {
  if (!(name in PRESETS)) throw invalidArgument(`unknown preset ${JSON.stringify(name)}`, `choose one of: ${presetNames().join(", ")}`);
  return name as PresetName;
}

export interface PresetOptions {
  cacheDir: string;
  signal?: AbortSignal;
  progress?: Progress;
}

/** The preset's root filesystem as an uncompressed tar stream. */
export async function presetRootfsTar(preset: PresetName, _opts: PresetOptions): Promise<Readable> {
  switch (preset) {
    case "busybox":
      return busyboxRootfsTar();
  }
}

export { busyboxRootfsTar, BUSYBOX_PATH } from "./busybox.ts";
