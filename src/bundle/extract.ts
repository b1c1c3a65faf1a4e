// Streaming `.tar.zst` extraction into a staging directory: `zstd -dc` (Debian's zstd; its
// default 128 MiB window limit also bounds its memory) reads the bundle from a FIFO that the
// download feeds (feeder.ts) and writes the decoded tar into a second FIFO, which the unpacker
// thread (unpacker.ts) walks: it counts the bytes against the decompression-bomb cap and asks
// this side about every header, so every member passes the checks in members.ts before
// anything is written. Regular files are written sparse (all-zero 4 KiB blocks become holes):
// ext4 images are mostly empty, and holes cost no disk or I/O.
import { spawn } from "node:child_process";
import { mkdir, symlink } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { BangerError, ErrorCode, integrity } from "../util/errors.ts";
import { installHint, which } from "../util/exec.ts";
import { type HeaderOverrides, type TarHeader, decodeTarHeader, longName, paxOverrides } from "../util/tar.ts";
import { isRefused, linkTarget, memberPath, shown, symlinkEscapeProblem, systemErrorShown } from "../util/paths.ts";
import { type BundleRules, type Member, memberType, placementProblem, symlinkEscapes } from "./members.ts";
import { type UnpackerOrder, type UnpackerReport, UnpackerFailure, startUnpacker } from "./unpacker.ts";

export interface DecoderOptions {
  /** What zstd reads: a FIFO fed by the download (feeder.ts), or a file. */
  inputPath: string;
  /** An empty FIFO for zstd's output (the caller makes and removes it, as makeFifo does). */
  outputFifo: string;
  staging: string;
  rules: BundleRules;
  /** Cap on the decoded tar stream, in bytes (decompression bomb). */
  maxUncompressedBytes: number;
  /** Cap on the number of members (inode bomb). */
  maxMembers: number;
  /** Called with the running total of decoded bytes. */
  onDecoded?: (bytes: number) => void;
}

export interface ExtractStats {
  members: number;
  decodedBytes: number;
}

/** A running decoder reading `inputPath`; `done` settles after all writes to disk stopped. */
export interface Decoder {
  done: Promise<ExtractStats>;
  /** Stops zstd at once (the failure path); `done` then rejects. */
  kill(): void;
}

const STDERR_KEEP = 4096;

/** The zstd binary, or a MissingDependency error saying what to install. */
export function requireZstd(): string {
  const path = which("zstd");
  if (!path) throw new BangerError(ErrorCode.MissingDependency, "zstd not found", installHint("zstd"));
  return path;
}

export function memberError(rules: BundleRules, name: string, reason: string): BangerError {
  return refusal(rules, `member ${shown(name)}: ${reason}`);
}

/** A member refused by the name rule, whose reason already names it; or any refusal with its own words. */
function refusal(rules: BundleRules, reason: string): BangerError {
  return integrity(`${rules.kind}: ${reason}`, "the bundle is damaged or not what the catalog promised; nothing was installed");
}

/** F_SETPIPE_SZ, the same number on every Linux architecture. */
const F_SETPIPE_SZ = 1031;
/** zstd's output FIFO holds this much instead of the kernel's default 64 KiB. */
export const DECODED_PIPE_BYTES = 1024 * 1024;

/**
 * The command that decodes `input` into `outputFifo`. The shell opens the FIFO (waiting for
 * the unpacker to open its end), then becomes zstd. With 64 KiB in the FIFO, zstd and the
 * unpacker wake each other for every 64 KiB of the 512 MiB a rootfs decodes to, and that
 * ping-pong made pulls about 15% slower (bench/bundle-pull.ts). Node cannot fcntl(2), so
 * where perl is installed (always on Debian and Ubuntu: perl-base is essential) it widens
 * the FIFO to 1 MiB, then execs zstd; elsewhere (or if the kernel refuses) the FIFO keeps its size.
 */
export function decoderCommand(zstd: string, input: string, outputFifo: string, perl: string | null = which("perl") ?? null): string[] {
  const decode = 'exec "$1" -d -c -q -- "$2" > "$3"';
  if (!perl) return ["sh", "-c", decode, "sh", zstd, input, outputFifo];
  const widen = `fcntl(STDOUT, ${F_SETPIPE_SZ}, ${DECODED_PIPE_BYTES}); exec { $ARGV[0] } @ARGV or die "cannot run $ARGV[0]: $!\\n"`;
  return ["sh", "-c", `exec "$4" -e '${widen}' -- "$1" -d -c -q -- "$2" > "$3"`, "sh", zstd, input, outputFifo, perl];
}

export function startDecoder(opts: DecoderOptions): Decoder {
  const [cmd, ...args] = decoderCommand(requireZstd(), opts.inputPath, opts.outputFifo);
  const child = spawn(cmd!, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => {
    if (stderr.length < STDERR_KEEP) stderr += b.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  child.on("error", () => undefined); // spawn failures surface as a non-zero close
  const members = new Map<string, Member>();
  const unpacker = startUnpacker({
    fifo: opts.outputFifo,
    maxBytes: opts.maxUncompressedBytes,
    decide: headerDecider(opts, members),
    onProgress: opts.onDecoded,
  });
  // zstd may be killed before it opened the output FIFO: the unpacker is released too.
  const kill = () => {
    child.kill("SIGKILL");
    void unpacker.stop();
  };
  const done = unpacker.done.then(
    async (decodedBytes) => {
      await unpacker.stop();
      if ((await exited) !== 0) throw zstdError(stderr);
      checkComplete(opts.rules, members);
      opts.onDecoded?.(decodedBytes);
      return { members: members.size, decodedBytes };
    },
    async (err: unknown) => {
      kill();
      await unpacker.stop();
      const failure = explain(opts, err);
      // zstd already gone on its own with an error (null: we killed it): a corrupt stream
      // makes tar see a short archive, and zstd's own message says more.
      const code = await exited;
      if (!(failure instanceof BangerError) && code !== null && code !== 0) throw zstdError(stderr);
      throw failure;
    },
  );
  return { done, kill };
}

function zstdError(stderr: string): BangerError {
  const last = stderr.trim().split("\n").pop() ?? "";
  return integrity(`bundle is not a valid zstd stream${last ? `: ${last}` : ""}`, "the download is damaged or is not a .tar.zst bundle");
}

/** Largest PAX or GNU long-name entry accepted (tar-stream's cap too). */
const MAX_META_BYTES = 1024 * 1024;
const META_TYPES = new Set(["pax-header", "pax-global-header", "gnu-long-path", "gnu-long-link-path"]);

/**
 * The unpacker's other half: decodes each header (with what PAX and GNU long-name entries
 * said before it), admits the member, makes directories and symlinks itself and tells the
 * unpacker where a file's bytes go. Throwing refuses the member and stops the unpacker.
 */
function headerDecider(opts: DecoderOptions, members: Map<string, Member>) {
  const maxMembers = opts.maxMembers;
  let overrides: HeaderOverrides = {};
  let collecting: string | undefined;
  return async (report: Extract<UnpackerReport, { t: "header" | "meta" }>): Promise<UnpackerOrder> => {
    if (report.t === "meta") {
      const data = Buffer.from(report.data);
      if (collecting === "pax-header") overrides = { ...overrides, ...paxOverrides(data) };
      else if (collecting === "gnu-long-path") overrides.path = longName(data);
      else if (collecting === "gnu-long-link-path") overrides.linkpath = longName(data);
      collecting = undefined; // global PAX records change nothing we keep
      return { op: "skip", size: 0 };
    }
    const header = decodeTarHeader(Buffer.from(report.block), overrides);
    if (META_TYPES.has(header.type)) {
      if (header.size > MAX_META_BYTES) throw new Error(`${header.type} entry of ${header.size} bytes is too large`);
      collecting = header.type;
      return { op: "collect", size: header.size };
    }
    overrides = {};
    if (members.size >= maxMembers) throw memberError(opts.rules, header.name, `more than ${maxMembers} members`);
    const member = admit(opts.rules, members, header);
    if (!member) return { op: "skip", size: header.size };
    members.set(member.path, member);
    const target = join(opts.staging, member.path);
    await mkdir(dirname(target), { recursive: true });
    if (member.type === "file") return { op: "write", path: target, mode: fileMode(header.mode), size: header.size };
    try {
      if (member.type === "directory") await mkdir(target, { recursive: true, mode: 0o755 });
      else await symlink(member.linkTarget!, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw memberError(opts.rules, member.path, "conflicts with an earlier member");
      throw err;
    }
    return { op: "skip", size: header.size };
  };
}

/** Turns whatever stopped the unpacker into the error a user sees. */
function explain(opts: DecoderOptions, err: unknown): unknown {
  if (!(err instanceof UnpackerFailure)) return asTarError(opts.rules, err);
  if (err.bomb) {
    return integrity(`${opts.rules.kind}: decodes to more than ${opts.maxUncompressedBytes} bytes (decompression bomb cap)`, `no genuine ${opts.rules.kind} is that large; nothing was installed`);
  }
  if (err.code === "EEXIST" && err.path) return memberError(opts.rules, relative(opts.staging, err.path), "conflicts with an earlier member");
  if (err.code) return systemErrorShown(Object.assign(new Error(err.message), { code: err.code, syscall: "write", path: err.path })); // ENOSPC and friends
  return asTarError(opts.rules, err);
}

/** Plain Errors (a bad header, a short archive) mean a damaged tar; system errors (ENOSPC, ...) keep their identity. */
function asTarError(rules: BundleRules, err: unknown): unknown {
  if (err instanceof BangerError || !(err instanceof Error)) return err;
  if ((err as NodeJS.ErrnoException).syscall) return systemErrorShown(err);
  return integrity(`${rules.kind}: not a valid tar archive: ${err.message}`, "the download is damaged or is not a bundle");
}

/** Runs every check on a header; returns the member to write, or undefined for the root entry. */
function admit(rules: BundleRules, members: ReadonlyMap<string, Member>, header: TarHeader): Member | undefined {
  const name = header.name;
  const path = memberPath(name, "member");
  if (isRefused(path)) throw refusal(rules, path.refused);
  const type = memberType(header.type);
  if (typeof type !== "string") throw memberError(rules, name, type.refused);
  if (path === "") {
    if (type !== "directory") throw memberError(rules, name, "the bundle root must be a directory");
    return undefined;
  }
  const target = type === "symlink" ? linkTarget(header.linkname) : undefined;
  if (isRefused(target)) throw memberError(rules, path, target.refused);
  const member: Member = { path, type, ...(target !== undefined ? { linkTarget: target } : {}) };
  const problem = placementProblem(members, path) ?? (target !== undefined ? symlinkEscapeProblem(path, target) : undefined) ?? rules.check(member);
  if (problem) throw memberError(rules, name, problem);
  return member;
}

/** Owner can always read and write; group/other keep read/execute; never setuid/setgid/sticky. */
function fileMode(mode: number | undefined): number {
  return ((mode ?? 0o644) & 0o755) | 0o600;
}

/** Checks needing the whole archive: required files present, no symlink leaving the bundle. */
function checkComplete(rules: BundleRules, members: ReadonlyMap<string, Member>): void {
  for (const req of rules.required) {
    if (members.get(req)?.type !== "file") throw integrity(`${rules.kind}: missing ${req}`, "the bundle is incomplete; nothing was installed");
  }
  for (const m of members.values()) {
    if (m.type === "symlink" && symlinkEscapes(members, m.path)) {
      throw memberError(rules, m.path, `symlink target ${shown(m.linkTarget ?? "")} escapes the bundle`);
    }
  }
}
