// Streaming `.tar.zst` extraction into a staging directory: `zstd -dc` (Debian's zstd; its
// default 128 MiB window limit also bounds its memory) reads the bundle from a FIFO that the
// download feeds (feeder.ts), the decoded stream is counted against the decompression-bomb cap
// and parsed with tar-stream, and every member passes the checks in members.ts before
// anything is written. Regular files are written sparse (all-zero
// 4 KiB blocks become holes): ext4 images are mostly empty, and holes cost no disk or I/O.
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { mkdir, open, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { BangerError, ErrorCode, integrity } from "../util/errors.ts";
import { installHint, which } from "../util/exec.ts";
import { BatchedFileWriter } from "./io.ts";
import {
  type BundleRules,
  type Member,
  memberType,
  normaliseMemberPath,
  placementProblem,
  symlinkEscapes,
  symlinkTargetProblem,
} from "./members.ts";

export interface DecoderOptions {
  /** What zstd reads: a FIFO fed by the download (feeder.ts), or a file. */
  inputPath: string;
  staging: string;
  rules: BundleRules;
  /** Cap on the decoded tar stream, in bytes (decompression bomb). */
  maxUncompressedBytes: number;
  /** Cap on the number of members (inode bomb). Default 200 000. */
  maxMembers?: number;
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
  return integrity(`${rules.kind}: member ${JSON.stringify(name)}: ${reason}`, "the bundle is damaged or not what the catalog promised; nothing was installed");
}

export function startDecoder(opts: DecoderOptions): Decoder {
  const child = spawn(requireZstd(), ["-d", "-c", "-q", "--", opts.inputPath], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => {
    if (stderr.length < STDERR_KEEP) stderr += b.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  child.on("error", () => undefined); // spawn failures surface as a non-zero close
  const kill = () => void child.kill("SIGKILL");
  const done = extractAll(child, opts).then(
    async (stats) => {
      if ((await exited) !== 0) throw zstdError(stderr);
      return stats;
    },
    async (err) => {
      kill();
      // zstd already gone on its own with an error (null: we killed it): a corrupt stream
      // makes tar see a short archive, and zstd's own message says more.
      const code = await exited;
      if (!(err instanceof BangerError) && code !== null && code !== 0) throw zstdError(stderr);
      throw err;
    },
  );
  return { done, kill };
}

function zstdError(stderr: string): BangerError {
  const last = stderr.trim().split("\n").pop() ?? "";
  return integrity(`bundle is not a valid zstd stream${last ? `: ${last}` : ""}`, "the download is damaged or is not a .tar.zst bundle");
}

/** One member as tar-stream hands it over: its header plus the content stream. */
type TarEntry = AsyncIterable<Buffer> & { header: tar.Header; resume(): unknown };

type ZstdChild = ChildProcessByStdio<null, Readable, Readable>;

/** Parses the decoded tar and writes each admitted member; resolves when the archive ended cleanly. */
async function extractAll(child: ZstdChild, opts: DecoderOptions): Promise<ExtractStats> {
  // A 1 MiB buffer instead of streamx's 16 KiB: with 64 KiB chunks from zstd, the default
  // paused and resumed the pipe on every chunk.
  const extract = tar.extract({ highWaterMark: 1024 * 1024 } as object);
  const decoded = feedCounted(child.stdout, extract, opts);
  const members = new Map<string, Member>();
  const maxMembers = opts.maxMembers ?? 200_000;
  try {
    for await (const entry of extract) {
      if (members.size >= maxMembers) throw memberError(opts.rules, entry.header.name, `more than ${maxMembers} members`);
      const member = admit(opts.rules, members, entry.header);
      if (member) {
        await writeMember(opts, member, entry as unknown as TarEntry);
        members.set(member.path, member);
      } else entry.resume();
    }
  } catch (err) {
    child.stdout.destroy();
    extract.destroy();
    throw asTarError(opts.rules, decoded.bomb ?? err); // the cap's verdict explains whatever broke after it
  }
  checkComplete(opts.rules, members);
  return { members: members.size, decodedBytes: decoded.bytes };
}

/** tar-stream's parse errors are plain Errors; system errors (ENOSPC, ...) keep their identity. */
function asTarError(rules: BundleRules, err: unknown): unknown {
  if (err instanceof BangerError || !(err instanceof Error) || (err as NodeJS.ErrnoException).syscall) return err;
  return integrity(`${rules.kind}: not a valid tar archive: ${err.message}`, "the download is damaged or is not a bundle");
}

/**
 * Pipes zstd's output into the tar parser by hand, counting it against the decompression
 * bomb cap on the way (cheaper per chunk than a Transform stage: this runs for every 64 KiB).
 */
function feedCounted(from: Readable, into: tar.Extract, opts: DecoderOptions): { bytes: number; bomb?: BangerError } {
  const count: { bytes: number; bomb?: BangerError } = { bytes: 0 };
  from.on("data", (chunk: Buffer) => {
    if (count.bomb) return;
    count.bytes += chunk.length;
    if (count.bytes > opts.maxUncompressedBytes) {
      count.bomb = integrity(`${opts.rules.kind}: decodes to more than ${opts.maxUncompressedBytes} bytes (decompression bomb cap)`, "if the bundle is genuine, raise the cap (maxUncompressedBytes)");
      from.destroy();
      into.destroy(count.bomb);
      return;
    }
    opts.onDecoded?.(count.bytes);
    if (!into.write(chunk)) {
      from.pause();
      into.once("drain", () => from.resume());
    }
  });
  from.on("end", () => into.end(undefined)); // streamx: end(undefined) ends without writing
  return count;
}

/** Runs every check on a header; returns the member to write, or undefined for the root entry. */
function admit(rules: BundleRules, members: ReadonlyMap<string, Member>, header: tar.Header): Member | undefined {
  const name = header.name;
  const path = normaliseMemberPath(name);
  if (typeof path !== "string") throw memberError(rules, name, path.refused);
  const type = memberType(header.type);
  if (typeof type !== "string") throw memberError(rules, name, type.refused);
  if (path === "") {
    if (type !== "directory") throw memberError(rules, name, "the bundle root must be a directory");
    return undefined;
  }
  const member: Member = { path, type, ...(type === "symlink" ? { linkTarget: header.linkname ?? "" } : {}) };
  const problem =
    placementProblem(members, path) ??
    (member.linkTarget !== undefined ? symlinkTargetProblem(path, member.linkTarget) : undefined) ??
    rules.check(member);
  if (problem) throw memberError(rules, name, problem);
  return member;
}

async function writeMember(opts: DecoderOptions, member: Member, entry: TarEntry): Promise<void> {
  const target = join(opts.staging, member.path);
  await mkdir(dirname(target), { recursive: true });
  try {
    if (member.type === "directory") {
      await mkdir(target, { recursive: true, mode: 0o755 });
      entry.resume();
    } else if (member.type === "symlink") {
      await symlink(member.linkTarget!, target);
      entry.resume();
    } else {
      await writeFileSparse(target, fileMode(entry.header.mode), entry, entry.header.size ?? 0);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw memberError(opts.rules, member.path, "conflicts with an earlier member");
    throw err;
  }
}

/** Owner can always read and write; group/other keep read/execute; never setuid/setgid/sticky. */
function fileMode(mode: number | undefined): number {
  return ((mode ?? 0o644) & 0o755) | 0o600;
}

async function writeFileSparse(path: string, mode: number, body: AsyncIterable<Buffer>, size: number): Promise<void> {
  // "wx": O_CREAT|O_EXCL never follows a symlink nor reuses a file.
  const fh = await open(path, "wx", mode);
  try {
    const out = new BatchedFileWriter(fh, true);
    for await (const chunk of body) {
      const wait = out.write(chunk);
      if (wait) await wait;
    }
    await out.finish();
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

/** Checks needing the whole archive: required files present, no symlink leaving the bundle. */
function checkComplete(rules: BundleRules, members: ReadonlyMap<string, Member>): void {
  for (const req of rules.required) {
    if (members.get(req)?.type !== "file") throw integrity(`${rules.kind}: missing ${req}`, "the bundle is incomplete; nothing was installed");
  }
  for (const m of members.values()) {
    if (m.type === "symlink" && symlinkEscapes(members, m.path)) {
      throw memberError(rules, m.path, `symlink target ${JSON.stringify(m.linkTarget)} escapes the bundle`);
    }
  }
}
