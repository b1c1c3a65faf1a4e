// Layer blobs as tar streams: gzip through zlib, zstd through the `zstd -dc` binary,
// uncompressed as-is, picked by media type (and by magic bytes when the type is generic).
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { PassThrough, type Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { createHash } from "node:crypto";
import { BangerError, ErrorCode, cancelled, integrity } from "../util/errors.ts";
import { installHint } from "../util/exec.ts";

export type Compression = "gzip" | "zstd" | "none";

export interface LayerFile {
  /** The compressed blob in the cache. */
  path: string;
  mediaType: string;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry), checked when given. */
  diffId?: string;
}

// Large chunks: each chunk is a thread-pool round trip for zlib and a pass through the tar
// parser, and zlib's default 16 KiB made the round trips cost more than the inflating.
const READ_CHUNK = 1024 * 1024;
const INFLATE_CHUNK = 256 * 1024;

const GENERIC = new Set(["application/octet-stream", "binary/octet-stream", ""]);

/** Compression for a layer media type; "sniff" for generic types; throws for non-tar layers. */
export function layerCompression(mediaType: string): Compression | "sniff" {
  if (GENERIC.has(mediaType)) return "sniff";
  const known = /^application\/vnd\.(oci\.image\.layer(\.nondistributable)?\.v1\.tar|docker\.image\.rootfs(\.foreign)?\.diff\.tar)([+.](gzip|zstd))?$/.exec(mediaType);
  if (!known) {
    throw new BangerError(ErrorCode.Failed, `unsupported layer media type ${JSON.stringify(mediaType.slice(0, 100))}`, "only tar, tar+gzip and tar+zstd layers can be flattened");
  }
  const c = known[5];
  return c === "gzip" ? "gzip" : c === "zstd" ? "zstd" : "none";
}

async function sniff(path: string): Promise<Compression> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
    if (head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "zstd";
    return "none";
  } finally {
    await fh.close();
  }
}

/** Opens a cached layer blob as its uncompressed tar stream. */
export async function openLayer(layer: LayerFile, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
  if (opts.signal?.aborted) throw cancelled();
  let kind = layerCompression(layer.mediaType);
  if (kind === "sniff") kind = await sniff(layer.path);
  const raw = createReadStream(layer.path, { signal: opts.signal, highWaterMark: READ_CHUNK });
  const tar = kind === "gzip" ? gunzip(raw) : kind === "zstd" ? unzstd(raw, opts.signal) : raw;
  if (!layer.diffId) return tar;
  const check = new DiffIdCheck(layer.diffId);
  pipeline(tar, check).catch((err: Error) => check.destroy(err));
  return check;
}

function gunzip(raw: Readable): Readable {
  const out = new PassThrough();
  const z = createGunzip({ chunkSize: INFLATE_CHUNK });
  raw.on("error", (e) => out.destroy(e));
  z.on("error", (e) => out.destroy(integrity(`layer is not valid gzip: ${e.message}`)));
  out.on("close", () => {
    raw.destroy();
    z.destroy();
  });
  raw.pipe(z).pipe(out);
  return out;
}

/** zstd has no zlib equivalent in Node 20: stream through the zstd binary. */
function unzstd(raw: Readable, signal?: AbortSignal): Readable {
  const out = new PassThrough();
  const child = spawn("zstd", ["-dc", "-q"], { stdio: ["pipe", "pipe", "pipe"], signal });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString("utf8");
  });
  child.on("error", (e: NodeJS.ErrnoException) => {
    raw.destroy();
    if (e.code === "ENOENT") out.destroy(new BangerError(ErrorCode.MissingDependency, "zstd not found (needed for zstd layers)", installHint("zstd")));
    else out.destroy(e.name === "AbortError" ? cancelled() : e);
  });
  raw.on("error", (e) => out.destroy(e));
  raw.pipe(child.stdin).on("error", () => undefined); // EPIPE when zstd quits early: reported by its exit status
  child.stdout.pipe(out, { end: false });
  child.on("close", (code) => {
    if (code === 0) out.end();
    else if (!out.destroyed) out.destroy(integrity(`layer is not valid zstd: ${stderr.trim().split("\n").pop() ?? `exit ${code}`}`));
  });
  out.on("close", () => {
    raw.destroy();
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return out;
}

/** Passes bytes through and fails at the end unless their sha256 is the expected diff_id. */
class DiffIdCheck extends Transform {
  private readonly hash = createHash("sha256");
  constructor(private readonly diffId: string) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const got = `sha256:${this.hash.digest("hex")}`;
    cb(got === this.diffId ? null : integrity(`uncompressed layer is ${got}, but the image config says ${this.diffId}`, "the registry served a corrupt image; pull again or report it"));
  }
}
