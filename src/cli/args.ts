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

/** `--memory 512M` / `2G` / `512` (MiB) as MiB. */
export const parseMemoryMib = (v: string): number => Math.round(parseSize(v, "--memory", "m") / 1024 ** 2);

/** `--user` and `-w` where commands run in a VM: the defaults are the daemon's (daemon/landing.ts), the same as `vm run`'s. */
export const USER_HELP = "user in the guest, name or uid[:gid] (default: the image's user, else dev when it has one, else root: as `vm run`)";
export const WORKDIR_HELP = "working directory in the guest (default: /workspace when `vm run` copied one in, else the image's WorkingDir, else the user's home)";

/** An Examples section for `--help`. */
export function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}`;
}
