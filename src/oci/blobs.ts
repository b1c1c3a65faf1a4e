// The content-addressed blob cache shared by every pull: <cacheDir>/blobs/sha256/<hex>.
// A blob lands there only after its bytes were counted against the declared size and hashed
// against the digest while streaming; partial downloads live in <cacheDir>/blobs/tmp and are
// removed on any failure, so the cache only ever holds verified content.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, cancelled, integrity, invalidArgument } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { type RegistryClient, isRetryableNetworkError, readBounded } from "./http.ts";
import { SHA256_DIGEST_RE } from "./ref.ts";

export interface BlobDescriptor {
  digest: string;
  size: number;
}

/** Emit progress at most every this many bytes (plus at the end). */
const PROGRESS_STEP = 1024 * 1024;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Rejects anything but sha256 up front, with the reason. */
export function checkDigest(digest: unknown, what: string): string {
  if (typeof digest !== "string") throw integrity(`${what} has no digest`);
  if (!digest.startsWith("sha256:")) {
    throw integrity(`${what} uses digest ${JSON.stringify(digest.slice(0, 80))}: only sha256 digests are supported`);
  }
  if (!SHA256_DIGEST_RE.test(digest)) throw integrity(`${what} has a malformed digest ${JSON.stringify(digest.slice(0, 80))}`);
  return digest;
}

export function blobPath(cacheDir: string, digest: string): string {
  if (!SHA256_DIGEST_RE.test(digest)) throw invalidArgument(`not a sha256 digest: ${digest}`);
  return join(cacheDir, "blobs", "sha256", digest.slice("sha256:".length));
}

/** A cache hit: the blob exists with the expected size (it was verified when written). */
export async function hasBlob(cacheDir: string, desc: BlobDescriptor): Promise<boolean> {
  const st = await stat(blobPath(cacheDir, desc.digest)).catch(() => undefined);
  return st?.isFile() === true && st.size === desc.size;
}

/** Reads a small cached blob (manifest, config) and re-checks its digest; undefined on a miss. */
export async function readCachedBlob(cacheDir: string, digest: string, maxBytes: number): Promise<Buffer | undefined> {
  const path = blobPath(cacheDir, digest);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile() || st.size > maxBytes) return undefined;
  const bytes = await readFile(path);
  if (sha256Digest(bytes) !== digest) {
    await unlink(path).catch(() => undefined); // corrupted on disk: refetch
    return undefined;
  }
  return bytes;
}

/** Partial downloads left by a crashed process: anything in blobs/tmp untouched for an hour. */
export async function sweepStaleTemps(cacheDir: string, maxAgeMs = 3600_000): Promise<void> {
  const tmpDir = join(cacheDir, "blobs", "tmp");
  const names = await readdir(tmpDir).catch(() => [] as string[]);
  const now = Date.now();
  for (const name of names) {
    const st = await stat(join(tmpDir, name)).catch(() => undefined);
    if (st && now - st.mtimeMs > maxAgeMs) await unlink(join(tmpDir, name)).catch(() => undefined);
  }
}

async function tempPathFor(cacheDir: string, digest: string): Promise<string> {
  const tmpDir = join(cacheDir, "blobs", "tmp");
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  await mkdir(join(cacheDir, "blobs", "sha256"), { recursive: true, mode: 0o700 });
  return join(tmpDir, `${digest.slice(7, 23)}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** Stores bytes already in memory (and already verified by the caller) under their digest. */
export async function storeBlob(cacheDir: string, digest: string, bytes: Buffer): Promise<string> {
  if (sha256Digest(bytes) !== digest) throw integrity(`blob content does not match ${digest}`);
  const dest = blobPath(cacheDir, digest);
  const tmp = await tempPathFor(cacheDir, digest);
  try {
    await writeFile(tmp, bytes, { mode: 0o600, flag: "wx" });
    await rename(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return dest;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  progress?: Progress;
  /** Progress phase name; "layer" for layers. */
  phase?: string;
}

/** Downloads and verifies one blob into the cache (retrying network failures); returns its path. */
export async function downloadBlob(client: RegistryClient, cacheDir: string, desc: BlobDescriptor, opts: DownloadOptions = {}): Promise<string> {
  checkDigest(desc.digest, "blob");
  try {
    return await client.withRetries(() => downloadOnce(client, cacheDir, desc, opts), opts.signal);
  } catch (err) {
    throw truncatedError((err as { cause?: unknown }).cause) ?? err;
  }
}

async function downloadOnce(client: RegistryClient, cacheDir: string, desc: BlobDescriptor, opts: DownloadOptions): Promise<string> {
  const what = `blob ${desc.digest}`;
  const res = await client.get(`blobs/${desc.digest}`, { what, signal: opts.signal });
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared !== desc.size) {
    await res.body?.cancel().catch(() => undefined);
    throw integrity(`${what}: the registry sends ${declared} bytes but the manifest says ${desc.size}`, "the registry or manifest is corrupt");
  }
  const tmp = await tempPathFor(cacheDir, desc.digest);
  try {
    await streamVerified(res, tmp, desc, what, opts);
    await rename(tmp, blobPath(cacheDir, desc.digest));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    if (opts.signal?.aborted) throw cancelled();
    throw err;
  }
  return blobPath(cacheDir, desc.digest);
}

/** Writes the body to `tmp`, hashing as it goes and stopping at the first byte past the declared size. */
async function streamVerified(res: Response, tmp: string, desc: BlobDescriptor, what: string, opts: DownloadOptions): Promise<void> {
  const hash = createHash("sha256");
  // A FileHandle, not a WriteStream: the file exists before the first byte and is closed
  // before the caller unlinks it, so a failure can never leave a late-created temp file.
  const fh = await open(tmp, "wx", 0o600);
  const phase = opts.phase ?? "layer";
  let done = 0;
  let reported = 0;
  opts.progress?.({ phase, message: desc.digest, done, total: desc.size });
  try {
    if (res.body) {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        if (opts.signal?.aborted) throw cancelled();
        done += chunk.byteLength;
        if (done > desc.size) {
          await res.body.cancel().catch(() => undefined);
          throw integrity(`${what} is larger than the ${desc.size} bytes the manifest declares`, "the registry or manifest is corrupt");
        }
        hash.update(chunk);
        await fh.write(chunk);
        if (done - reported >= PROGRESS_STEP) {
          reported = done;
          opts.progress?.({ phase, message: desc.digest, done, total: desc.size });
        }
      }
    }
  } catch (err) {
    if (isRetryableNetworkError(err)) throw cutOff(what, done, desc.size);
    throw err;
  } finally {
    await fh.close();
  }
  if (done < desc.size) throw cutOff(what, done, desc.size);
  const got = `sha256:${hash.digest("hex")}`;
  if (got !== desc.digest) throw integrity(`${what} does not match its digest (got ${got})`, "the registry served corrupt data; pull again or report it");
  opts.progress?.({ phase, message: desc.digest, done, total: desc.size });
}

/** Fetches a small blob (an image config) fully into memory, verified and cached. */
export async function fetchSmallBlob(client: RegistryClient, cacheDir: string | undefined, desc: BlobDescriptor, maxBytes: number, what: string, signal?: AbortSignal): Promise<Buffer> {
  checkDigest(desc.digest, what);
  if (desc.size > maxBytes) throw integrity(`${what} is ${desc.size} bytes, over the ${maxBytes}-byte limit`);
  if (cacheDir) {
    const hit = await readCachedBlob(cacheDir, desc.digest, maxBytes);
    if (hit) return hit;
  }
  const bytes = await client.withRetries(async () => {
    const res = await client.get(`blobs/${desc.digest}`, { what, signal });
    return readBounded(res, desc.size, what);
  }, signal);
  if (bytes.length !== desc.size) throw integrity(`${what} is ${bytes.length} bytes, but the manifest says ${desc.size}`);
  if (sha256Digest(bytes) !== desc.digest) throw integrity(`${what} does not match its digest ${desc.digest}`);
  if (cacheDir) await storeBlob(cacheDir, desc.digest, bytes);
  return bytes;
}

/** A body that ended early: marked retryable (like a reset) and recognisable afterwards. */
function cutOff(what: string, done: number, size: number): Error {
  return Object.assign(new Error(`${what} was cut off after ${done} of ${size} bytes`), { code: "ECONNRESET", truncated: true });
}

function truncatedError(err: unknown): BangerError | undefined {
  if ((err as { truncated?: boolean })?.truncated) return new BangerError(ErrorCode.Integrity, (err as Error).message, "the registry keeps closing the download early; try again later");
  return undefined;
}
