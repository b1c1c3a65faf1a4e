// Running host tools (qemu-img, mkfs.ext4, debugfs, ip, nft, ...): argv only, never a shell;
// bounded output; cancellable; a missing tool becomes an error naming the package to install.
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { BangerError, ErrorCode, cancelled, failed } from "./errors.ts";

/** Debian package that provides each host tool banger runs. */
export const TOOL_PACKAGES: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  "mkfs.ext4": "e2fsprogs",
  debugfs: "e2fsprogs",
  e2fsck: "e2fsprogs",
  resize2fs: "e2fsprogs",
  zstd: "zstd",
  xz: "xz-utils",
  lz4: "lz4",
  nft: "nftables",
  ip: "iproute2",
  cpio: "cpio",
  modinfo: "kmod",
  dmsetup: "dmsetup",
  losetup: "mount",
  git: "git",
  debootstrap: "debootstrap",
  "apt-get": "apt",
};

export function installHint(tool: string): string {
  const pkg = TOOL_PACKAGES[tool];
  return pkg ? `install it: apt-get install -y ${pkg}` : `install ${tool} and make sure it is on PATH`;
}

export interface RunOptions {
  signal?: AbortSignal;
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Cap on captured stdout/stderr each; the rest is dropped. Default 4 MiB. */
  maxOutput?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv[0] with the rest as arguments; resolves with the exit code and output. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("run: empty argv");
  const max = opts.maxOutput ?? 4 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(cancelled());
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      signal: opts.signal,
      timeout: opts.timeoutMs,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout!.on("data", (b: Buffer) => {
      if (outLen < max) out.push(b);
      outLen += b.length;
    });
    child.stderr!.on("data", (b: Buffer) => {
      if (errLen < max) err.push(b);
      errLen += b.length;
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") reject(new BangerError(ErrorCode.MissingDependency, `${cmd} not found`, installHint(cmd)));
      else if (e.name === "AbortError") reject(cancelled());
      else reject(e);
    });
    child.on("close", (code, sig) => {
      if (opts.signal?.aborted) return reject(cancelled());
      resolve({
        code: code ?? (sig ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
  });
}

/** Rejects with a Timeout error when `p` has not settled within `ms` (it keeps running: the caller cancels it). */
export function withDeadline<T>(p: Promise<T>, ms: number, what = "an answer"): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new BangerError(ErrorCode.Timeout, `no ${what} within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}

/** Like run, but a non-zero exit is an error carrying the tool's last stderr line. */
export async function runChecked(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const res = await run(argv, opts);
  if (res.code !== 0) {
    const last = res.stderr.trim().split("\n").pop() ?? "";
    throw failed(`${argv[0]} exited with status ${res.code}${last ? `: ${last}` : ""}`);
  }
  return res;
}

/** The tool's full path when found on PATH (plus the sbin directories, which non-root PATHs lack). */
export function which(tool: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      accessSync(`${dir}/${tool}`, constants.X_OK);
      return `${dir}/${tool}`;
    } catch {
      /* not here: keep looking */
    }
  }
  return undefined;
}
