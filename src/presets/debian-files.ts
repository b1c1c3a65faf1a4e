// What the debian presets add on top of debootstrap, as pure functions of their inputs, so
// every file the image gets can be checked without running debootstrap: the package lists,
// the `dev` user's account lines, sudoers, hostname, hosts and locale.
import { invalidArgument } from "../util/errors.ts";

export const DEBIAN_SUITE = "bookworm";
export const DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian";

/**
 * On top of `--variant=minbase` (which already has coreutils, dpkg, apt, ...). The agent sets
 * each VM's hostname at boot, which /etc/hosts cannot know: libnss-myhostname (200 KB) makes
 * it resolve anyway, so sudo does not warn "unable to resolve host" on every call.
 */
export const DEBIAN_PACKAGES = ["bash", "coreutils", "git", "ca-certificates", "curl", "openssh-server", "sudo", "iproute2", "procps", "less", "libnss-myhostname"] as const;

/** debian-dev adds a toolchain. npm is left out: in bookworm it pulls ~400 node-* packages. */
export const DEBIAN_DEV_PACKAGES = [...DEBIAN_PACKAGES, "build-essential", "python3", "nodejs", "make", "pkg-config"] as const;

export interface DevUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export const DEV_USER: DevUser = { name: "dev", uid: 1000, gid: 1000, home: "/home/dev", shell: "/bin/bash" };
export const WORKSPACE_DIR = "/workspace";
export const DEFAULT_HOSTNAME = "debian";

/** Account files the dev user is added to, and the line each gets. */
export function accountLines(user: DevUser, daysSinceEpoch: number): Record<"passwd" | "group" | "shadow" | "gshadow", string> {
  return {
    passwd: `${user.name}:x:${user.uid}:${user.gid}:${user.name}:${user.home}:${user.shell}`,
    group: `${user.name}:x:${user.gid}:`,
    // "*": no password at all (not a locked "!"), so SSH keys work and sudo needs none.
    shadow: `${user.name}:*:${daysSinceEpoch}:0:99999:7:::`,
    gshadow: `${user.name}:!::`,
  };
}

/**
 * Appends `line` to an account file (passwd, group, shadow, gshadow). Refuses when the name,
 * or for passwd/group the numeric id, is already taken: a silent duplicate would make the
 * image's idea of uid 1000 ambiguous.
 */
export function appendAccount(fileText: string, line: string, kind: "passwd" | "group" | "shadow" | "gshadow"): string {
  const [name, , id] = line.split(":");
  const checkId = kind === "passwd" || kind === "group";
  for (const existing of fileText.split("\n")) {
    const f = existing.split(":");
    if (f[0] === name) throw invalidArgument(`/etc/${kind} already has an entry named ${JSON.stringify(name)}`);
    if (checkId && f.length > 2 && f[2] === id) throw invalidArgument(`/etc/${kind} already has id ${id} (${f[0]})`);
  }
  const base = fileText === "" || fileText.endsWith("\n") ? fileText : `${fileText}\n`;
  return `${base}${line}\n`;
}

/** /etc/sudoers.d/<user>: passwordless sudo. Must be root-owned and mode 0440 or sudo ignores it. */
export function sudoersFile(userName: string): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(userName)) throw invalidArgument(`invalid user name ${JSON.stringify(userName)}`);
  return `# banger: the ${userName} user runs anything as root without a password.\n${userName} ALL=(ALL:ALL) NOPASSWD: ALL\n`;
}
export const SUDOERS_MODE = 0o440;

export function hostnameFile(hostname: string): string {
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(hostname)) throw invalidArgument(`invalid hostname ${JSON.stringify(hostname)}`);
  return `${hostname}\n`;
}

/** Debian's usual /etc/hosts: loopback names plus the image's hostname on 127.0.1.1. */
export function hostsFile(hostname: string): string {
  return ["127.0.0.1\tlocalhost", `127.0.1.1\t${hostname}`, "", "::1\t\tlocalhost ip6-localhost ip6-loopback", "ff02::1\t\tip6-allnodes", "ff02::2\t\tip6-allrouters", ""].join("\n");
}

/** /etc/default/locale: C.UTF-8 is built into bookworm's libc, so no locales package is needed. */
export function localeFile(): string {
  return "LANG=C.UTF-8\n";
}

/** /etc/resolv.conf placeholder: the agent writes the real one at boot (banger.dns=). */
export function resolvConfFile(): string {
  return "# written by the banger agent at boot\n";
}

/** Paths (relative to the root) emptied to keep the image small and free of build-host state. */
export const CLEAN_DIR_CONTENTS = ["var/lib/apt/lists", "var/cache/apt", "tmp", "var/tmp"] as const;
/** Kept directories apt expects, recreated empty after cleaning. */
export const KEEP_DIRS = ["var/lib/apt/lists/partial", "var/cache/apt/archives/partial"] as const;
/** Debootstrap/build logs and per-machine identity that every VM would otherwise share. */
export const REMOVE_FILES = ["var/log/bootstrap.log", "var/lib/dbus/machine-id", "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old"] as const;
/** SSH host keys: generated at first boot by the agent (ssh-keygen -A), never shared between VMs. */
export const SSH_HOST_KEY = /^ssh_host_.*_key(\.pub)?$/;

/** Days since 1970-01-01: the "last password change" field of /etc/shadow. */
export function daysSinceEpoch(now: Date): number {
  return Math.floor(now.getTime() / 86_400_000);
}
