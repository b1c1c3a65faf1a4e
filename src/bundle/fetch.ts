// fetchBundle: one verified, cached, hardened pull of a `.tar.zst` bundle into a directory.
//
// The download and the extraction run at once, so a pull costs about one transfer: the main
// thread receives the body, feeder threads (feeder.ts) hash it, write the partial cache file
// and feed zstd through a FIFO, and an unpacker thread (unpacker.ts) writes out zstd's output
// from a second FIFO, asking the main thread (extract.ts) about every member. Nothing is
// trusted until the end: the staging directory is published by rename only after the whole
// body arrived with the declared size and sha256 and every member passed the checks; the
// partial download becomes `<cacheDir>/bundles/<sha256>.tar.zst` only after it verified.
// Any failure or cancellation removes the staging directory, the FIFO and the partial file.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, alreadyExists, cancelled, integrity, invalidArgument, throwIfAborted } from "../util/errors.ts";
import { publishDir } from "../util/fsx.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import { type Decoder, type ExtractStats, requireZstd, startDecoder } from "./extract.ts";
import { Feeder, makeFifos } from "./feeder.ts";
import { throttled } from "./io.ts";
import type { BundleRules } from "./members.ts";
import { type ByteSink, type OpenedSource, openSource, parseSourceUrl } from "./source.ts";

export interface FetchBundleOptions<T> {
  /** http(s) or file URL of the `.tar.zst`. */
  url: string;
  /** Expected sha256 of the compressed bundle, 64 hex chars. */
  sha256: string;
  /** Exact size of the compressed bundle; reading stops as soon as more arrives. */
  sizeBytes: number;
  /** Where the extracted bundle is published; must not exist yet. */
  destDir: string;
  /** Verified downloads are kept as `<cacheDir>/bundles/<sha256>.tar.zst`. */
  cacheDir: string;
  /** Partial downloads live here; same filesystem as cacheDir, so keeping one is a rename. */
  tmpDir: string;
  rules: BundleRules;
  /** Cap on the decoded tar stream; default `defaultMaxUncompressedBytes(sizeBytes)`, never above `rules.maxDecodedBytes`. */
  maxUncompressedBytes?: number;
  signal?: AbortSignal;
  progress?: Progress;
  /** Runs on the complete staging directory before it is published (write or check files); its result is returned. */
  finish?: (staging: string) => Promise<T>;
}

export interface FetchedBundle<T> {
  dir: string;
  /** True when the bytes came from the cache and nothing was downloaded. */
  cached: boolean;
  members: number;
  decodedBytes: number;
  result: T;
}

const GiB = 1024 ** 3;

/**
 * The decompression-bomb cap unless the caller sets one: 64 times the compressed size, but
 * never below 16 GiB, because a mostly empty ext4 image legitimately compresses by far more
 * than 64x (zero blocks cost zstd almost nothing). Zero blocks are written as holes, so the
 * cap bounds CPU time and real data rather than disk use of the empty parts.
 */
export function defaultMaxUncompressedBytes(sizeBytes: number): number {
  return Math.max(16 * GiB, 64 * sizeBytes);
}

export function bundleCachePath(cacheDir: string, sha256: string): string {
  return join(cacheDir, "bundles", `${sha256.toLowerCase()}.tar.zst`);
}

export async function fetchBundle<T = undefined>(opts: FetchBundleOptions<T>): Promise<FetchedBundle<T>> {
  const sha256 = checkFetchArgs(opts);
  requireZstd();
  throwIfAborted(opts.signal);
  if (await exists(opts.destDir)) throw alreadyExists(`${opts.destDir} already exists`, "remove it first (or pull with --force)");
  const cachePath = bundleCachePath(opts.cacheDir, sha256);
  const cached = await exists(cachePath);
  const inner = new AbortController();
  const onAbort = () => inner.abort();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await publishDir(opts.destDir, (staging) => fillStaging(opts, { sha256, cachePath, cached, staging, inner }));
  } catch (err) {
    if (opts.signal?.aborted) throw cancelled();
    // Integrity failures mean the bytes themselves are bad: keeping them would only replay the failure.
    if (err instanceof BangerError && err.code === ErrorCode.Integrity) await rm(cachePath, { force: true });
    throw err;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

interface PullState {
  sha256: string;
  cachePath: string;
  cached: boolean;
  staging: string;
  inner: AbortController;
}

/** The two FIFOs of a pull: the bundle into zstd, and the decoded tar out of it. */
interface Fifos {
  input: string;
  output: string;
}

async function fillStaging<T>(opts: FetchBundleOptions<T>, st: PullState): Promise<FetchedBundle<T>> {
  const want: Expected = { sha256: st.sha256, sizeBytes: opts.sizeBytes, what: opts.url };
  // Asked first, so the server's answer is on its way while the FIFOs and zstd are set up.
  const download = st.cached ? undefined : openDownload(opts.url, want, st.inner.signal);
  download?.catch(() => undefined); // awaited later; a failure meanwhile is not "unhandled"
  const base = join(opts.tmpDir, `bundle-${st.sha256.slice(0, 16)}-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fifos: Fifos = { input: `${base}.in.fifo`, output: `${base}.out.fifo` };
  try {
    await mkdir(opts.tmpDir, { recursive: true });
    await makeFifos([fifos.input, fifos.output], st.inner.signal);
    return await decodeFromFifos(opts, st, want, fifos, download);
  } finally {
    download?.then(
      (src) => src.close(),
      () => undefined,
    ); // drops a body never read (a failure before it)
    await rm(fifos.input, { force: true });
    await rm(fifos.output, { force: true });
  }
}

/** Opens the download and checks the size the server announces, if any, against the catalog's. */
async function openDownload(location: string, want: Expected, signal: AbortSignal): Promise<OpenedSource> {
  const src = await openSource(parseSourceUrl(location), { signal });
  if (src.announcedBytes !== undefined && src.announcedBytes !== want.sizeBytes) {
    src.close();
    throw integrity(`${want.what}: size is ${src.announcedBytes} bytes, the catalog says ${want.sizeBytes}`, "the mirror serves a different file than the catalog describes");
  }
  return src;
}

async function decodeFromFifos<T>(opts: FetchBundleOptions<T>, st: PullState, want: Expected, fifos: Fifos, download: Promise<OpenedSource> | undefined): Promise<FetchedBundle<T>> {
  const report = throttled(opts.progress ?? noProgress);
  let downloading = !st.cached;
  const decoder = startDecoder({
    inputPath: fifos.input,
    outputFifo: fifos.output,
    staging: st.staging,
    rules: opts.rules,
    maxUncompressedBytes: Math.min(opts.maxUncompressedBytes ?? defaultMaxUncompressedBytes(opts.sizeBytes), opts.rules.maxDecodedBytes),
    maxMembers: opts.rules.maxMembers,
    // While downloading, the download bar is the one that moves; extraction keeps pace with it.
    onDecoded: (done) => {
      if (!downloading) report({ phase: "extract", done });
    },
  });
  st.inner.signal.addEventListener("abort", decoder.kill, { once: true });
  const sink: Sink = { fifo: fifos.input, stopReader: decoder.kill };
  const pump = !download
    ? async () => {
        report({ phase: "download", done: opts.sizeBytes, total: opts.sizeBytes, message: "cached" }, true);
        await pumpCached(st.cachePath, want, sink, st.inner.signal);
      }
    : async () => {
        await pumpDownload(opts, st, download, want, sink, (done) => report({ phase: "download", done, total: opts.sizeBytes }, done === opts.sizeBytes));
        downloading = false;
      };
  const stats = await runBoth(pump, decoder, st.inner);
  report({ phase: "extract", done: stats.decodedBytes, message: `${stats.members} members` }, true);
  const result = (opts.finish ? await opts.finish(st.staging) : undefined) as T;
  return { dir: opts.destDir, cached: st.cached, members: stats.members, decodedBytes: stats.decodedBytes, result };
}

/**
 * Runs the byte pump and the decoder together; a failure of either stops the other, and the
 * first failure is the one reported (the other's is its consequence). Except: the pump's own
 * verdict (HTTP error, truncation, size, sha256) always wins, because a damaged download
 * explains whatever the decoder saw before it.
 */
async function runBoth(pump: () => Promise<void>, decoder: Decoder, inner: AbortController): Promise<ExtractStats> {
  let first: unknown;
  const pumping = pump().catch((err: unknown) => {
    first ??= err;
    decoder.kill();
    throw err;
  });
  const decoding = decoder.done.catch((err: unknown) => {
    first ??= err;
    inner.abort();
    throw err;
  });
  const [p, d] = await Promise.allSettled([pumping, decoding]);
  if (p.status === "rejected" && isOwnVerdict(p.reason)) throw p.reason;
  if (p.status === "rejected" || d.status === "rejected") throw first;
  return d.value;
}

function isOwnVerdict(err: unknown): boolean {
  return err instanceof BangerError && err.code !== ErrorCode.Cancelled;
}

interface Expected {
  sha256: string;
  sizeBytes: number;
  /** Named in messages. */
  what: string;
}

/** Where the verified bytes go: the FIFO zstd reads, and how to stop zstd (on failure, first). */
interface Sink {
  fifo: string;
  stopReader: () => void;
}

/** Downloads into a partial file while feeding the decoder; keeps the file in the cache once verified. */
async function pumpDownload<T>(opts: FetchBundleOptions<T>, st: PullState, download: Promise<OpenedSource>, want: Expected, sink: Sink, onBytes: (n: number) => void): Promise<void> {
  const partial = join(opts.tmpDir, `bundle-${st.sha256.slice(0, 16)}-${process.pid}-${Date.now()}.partial`);
  const fh = await open(partial, "wx", 0o600);
  let kept = false;
  try {
    await feedVerified(sink, fh.fd, want, st.inner.signal, onBytes, () => download);
    await fh.close();
    await keepInCache(partial, st.cachePath);
    kept = true;
  } finally {
    await fh.close().catch(() => undefined);
    if (!kept) await rm(partial, { force: true });
  }
}

async function pumpCached(path: string, want: Expected, sink: Sink, signal: AbortSignal): Promise<void> {
  await feedVerified(
    sink,
    undefined,
    { ...want, what: `cached bundle ${path}` },
    signal,
    () => undefined,
    () => openSource(parseSourceUrl(path), { signal }),
  );
}

/**
 * Opens the source and feeds it to the sink through a Feeder (hash, optional copy to `teeFd`);
 * by the time this settles the feeder thread has stopped, so `teeFd` may be closed.
 */
async function feedVerified(sink: Sink, teeFd: number | undefined, want: Expected, signal: AbortSignal, onBytes: (n: number) => void, openBody: () => Promise<OpenedSource>): Promise<void> {
  const feeder = new Feeder(sink.fifo, teeFd, signal);
  let ok = false;
  try {
    await pumpVerified(await openBody(), want, signal, feeder, onBytes);
    ok = true;
  } finally {
    if (!ok) sink.stopReader(); // zstd goes first, so a feeder write blocked on the FIFO ends with EPIPE
    await feeder.close();
  }
}

/**
 * Reads the body to the end into `feeder` (which hashes it): more bytes than declared stops
 * the read at once (it never reads more than one byte past); fewer, or a different sha256,
 * fails after the last byte.
 */
async function pumpVerified(src: OpenedSource, want: Expected, signal: AbortSignal, feeder: Feeder, onBytes: (n: number) => void): Promise<void> {
  let done = 0;
  const counted: ByteSink = {
    space: () => {
      const room = feeder.space();
      return room.length > want.sizeBytes - done ? room.subarray(0, want.sizeBytes - done + 1) : room;
    },
    commit: (n) => {
      done += n;
      if (done > want.sizeBytes) throw integrity(`${want.what}: more than the declared ${want.sizeBytes} bytes`, "the mirror serves a different file than the catalog describes");
      onBytes(done);
      return feeder.commit(n)?.catch(sinkFailure);
    },
  };
  try {
    await src.readInto(counted);
  } catch (err) {
    src.close();
    throw whyReadStopped(err, signal, want, done);
  }
  if (done < want.sizeBytes) throw cutShort(want, done);
  const got = await feeder.finish().catch((err: unknown) => {
    throw signal.aborted ? cancelled() : err;
  });
  if (got !== want.sha256) throw integrity(`${want.what}: sha256 mismatch: got ${got}, expected ${want.sha256}`, "the download is damaged or was tampered with; nothing was installed");
}

/** What a user should see when reading the body failed after `done` bytes. */
function whyReadStopped(err: unknown, signal: AbortSignal, want: Expected, done: number): unknown {
  if (signal.aborted) return cancelled();
  if (err instanceof SinkFailure) return err.cause; // where the bytes go broke, not the transfer
  if (err instanceof BangerError && err.code !== ErrorCode.Unavailable) return err; // too many bytes, a timeout
  return cutShort(want, done, err);
}

function cutShort(want: Expected, done: number, cause?: unknown): BangerError {
  const why = cause === undefined ? "" : ` (${cause instanceof BangerError ? cause.message.replace(/^GET \S+: /, "") : ((cause as NodeJS.ErrnoException).code ?? (cause as Error).message)})`;
  return new BangerError(ErrorCode.Unavailable, `${want.what}: download cut short after ${done} of ${want.sizeBytes} bytes${why}`, "retry", { cause });
}

function sinkFailure(err: unknown): never {
  throw new SinkFailure(err);
}

class SinkFailure extends Error {
  constructor(override readonly cause: unknown) {
    super("sink failed");
  }
}

async function keepInCache(partial: string, cachePath: string): Promise<void> {
  await mkdir(join(cachePath, ".."), { recursive: true });
  try {
    await rename(partial, cachePath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    const tmp = `${cachePath}.partial-${process.pid}`;
    await copyFile(partial, tmp);
    await rename(tmp, cachePath);
  }
}

function checkFetchArgs(opts: FetchBundleOptions<unknown>): string {
  if (!/^[0-9a-fA-F]{64}$/.test(opts.sha256)) throw invalidArgument(`bundle sha256 must be 64 hex chars, got ${JSON.stringify(opts.sha256)}`);
  if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes <= 0) throw invalidArgument(`bundle size must be a positive integer, got ${opts.sizeBytes}`);
  parseSourceUrl(opts.url);
  return opts.sha256.toLowerCase();
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
