// Parsers and help text for command-line values shared by several commands.
import { invalidArgument } from "../util/errors.ts";
import { parseSize } from "../util/size.ts";

/** `-e KEY=VALUE` pairs as an environment map. */
export function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of pairs) {
    const i = kv.indexOf("=");
    if (i <= 0) throw invalidArgument(`--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** A parser for a whole-number option within [min, max]. */
export function parseCount(flag: string, min: number, max: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw invalidArgument(`${flag} takes a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
    return n;
  };
}

/** `--memory 512M` / `2G` / `512` (MiB) as bytes, rounded to whole MiB (the VMMs' unit), 64M to 256G as the daemon takes. */
export function parseMemory(v: string): number {
  const bytes = Math.round(parseSize(v, "--memory", "m") / 1024 ** 2) * 1024 ** 2;
  if (bytes < 64 * 1024 ** 2 || bytes > 256 * 1024 ** 3) throw invalidArgument(`--memory must be 64M..256G, not ${JSON.stringify(v)}`, "e.g. --memory 512M or --memory 2G (a bare number is MiB)");
  return bytes;
}

/** A disk or image size option (`--disk-size 8G`, `--size 2G`): bytes, more than zero. */
export function parseDiskSize(flag: string): (v: string) => number {
  return (v: string) => {
    const n = parseSize(v, flag);
    if (n < 1) throw invalidArgument(`${flag} must be more than 0, not ${JSON.stringify(v)}`, `e.g. ${flag} 8G`);
    return n;
  };
}

/** `--user` and `-w` where commands run in a VM: the defaults are the daemon's (daemon/landing.ts), the same as `vm run`'s. */
export const USER_HELP = "user in the guest, name or uid[:gid] (default: the image's user, else dev when it has one, else root: as `vm run`)";
export const WORKDIR_HELP = "working directory in the guest (default: /workspace when `vm run` copied one in, else the image's WorkingDir, else the user's home)";
