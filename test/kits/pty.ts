// Test support: runs `banger` on a pseudo-terminal, as a user's shell would (`script` gives it
// a real terminal on stdin and stdout).
//
// The line runs under /bin/sh as `exec banger ...`, so banger is the only process in the
// terminal's foreground group. Without `exec`, dash (Debian's sh, used whenever $SHELL is
// unset, as on CI) stays as banger's parent, takes the Ctrl-C itself, dies, and `script`
// reports 130 whatever banger did.
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { REPO } from "../helpers.ts";

/** One argument for `sh -c`, quoted. */
export const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

export interface PtyOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Shell commands run on the terminal before banger (e.g. `stty cols 91 rows 27`). */
  before?: string;
}

/** `banger ARGS` on a fresh PTY; stdin is what the user types, stdout what the terminal shows. */
export function spawnOnPty(args: string[], opts: PtyOptions): ChildProcessByStdio<Writable, Readable, null> {
  const line = `exec ${[join(REPO, "bin", "banger"), ...args].map(shellQuote).join(" ")}`;
  return spawn("script", ["-qfec", opts.before ? `${opts.before}; ${line}` : line, "/dev/null"], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env, SHELL: "/bin/sh" },
    stdio: ["pipe", "pipe", "inherit"],
  });
}
