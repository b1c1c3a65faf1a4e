// Decompression for kernel packages, images and modules: gzip with zlib, everything else with
// Debian's own binaries (xz, zstd, lz4: `lz4 -dc` also reads the legacy frame Debian's kernels
// use). Output is always bounded.
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { PassThrough, Readable, pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { BangerError, ErrorCode, cancelled, invalidArgument } from "../util/errors.ts";
import { installHint, which } from "../util/exec.ts";

export type Compression = "none" | "gzip" | "xz" | "zstd" | "lz4";

const TOOL_ARGS: Record<Exclude<Compression, "none" | "gzip">, [string, string[]]> = {
  // A stream's header names its dictionary (up to 1.5 GiB) and xz allocates it; Debian's
  // packages, kernels and modules need at most 64 MiB. (zstd's own default limit is 128 MiB.)
  xz: ["xz", ["-dc", "--single-stream", "--memlimit=256MiB"]],
  zstd: ["zstd", ["-dc"]],
  lz4: ["lz4", ["-dc"]],
};

/** The decoded stream; a decoder failure surfaces as an error on it. */
export function decodeStream(format: Compression, input: Readable, signal?: AbortSignal): Readable {
  if (format === "none") return input;
  const out = new PassThrough();
  const fail = (err: Error | null | undefined) => {
    if (err) out.destroy(err);
  };
  if (format === "gzip") {
    pipeline(input, createGunzip(), out, fail);
    return out;
  }
  const [tool, args] = TOOL_ARGS[format];
  const bin = which(tool);
  if (!bin) throw new BangerError(ErrorCode.MissingDependency, `${tool} not found`, installHint(tool));
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "ignore"], signal });
  child.on("error", fail);
  // `out` ends only once the exit status is known: a decoder that fails (or refuses a stream
  // over its memory limit) must not look like data that simply ended.
  child.on("close", (code) => {
    if (code === 0) out.end();
    else out.destroy(new Error(`${tool} could not decode the data (status ${code})`));
  });
  // A reader that stops early (output over its cap, a bad header) destroys `out`: the decoder
  // would otherwise block on a full pipe for the daemon's lifetime.
  out.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  child.stdin.on("error", () => undefined); // the decoder may stop reading early; its exit code tells
  pipeline(input, child.stdin, () => undefined);
  child.stdout.pipe(out, { end: false });
  return out;
}

/** Decodes `input` into a new file at `outPath`; more than `maxBytes` of output is an error (`overMessage`, if given). */
export async function decodeToFile(format: Compression, input: Buffer | Readable, outPath: string, maxBytes: number, signal?: AbortSignal, overMessage?: string): Promise<number> {
  const source = Buffer.isBuffer(input) ? Readable.from([input]) : input;
  const decoded = decodeStream(format, source, signal);
  const fh = await open(outPath, "wx", 0o644);
  let total = 0;
  try {
    for await (const chunk of decoded as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw invalidArgument(overMessage ?? `decompressed data is larger than ${maxBytes} bytes`);
      await fh.write(chunk);
    }
  } catch (err) {
    decoded.destroy();
    source.destroy();
    if (signal?.aborted) throw cancelled();
    throw err;
  } finally {
    await fh.close();
  }
  return total;
}

/** Compression of a module file by its extension. */
export function compressionOfName(name: string): Compression {
  if (name.endsWith(".xz")) return "xz";
  if (name.endsWith(".zst")) return "zstd";
  if (name.endsWith(".gz")) return "gzip";
  return "none";
}
