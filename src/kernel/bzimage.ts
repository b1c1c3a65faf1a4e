// vmlinux from a bzImage: the x86 boot protocol's setup header says where the compressed
// kernel sits (payload_offset/payload_length at 0x248/0x24c, relative to the protected-mode
// code at (setup_sects+1)*512); its magic says how it is compressed. The result must be an
// ELF, as Firecracker requires.
import { open } from "node:fs/promises";
import { invalidArgument } from "../util/errors.ts";
import { decodeToFile, type Compression } from "./decode.ts";

/** A decompressed kernel larger than this is not a kernel. */
const MAX_VMLINUX = 1024 * 1024 * 1024;

const MAGICS: Array<[string, Buffer, Compression]> = [
  ["gzip", Buffer.from([0x1f, 0x8b]), "gzip"],
  ["xz", Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), "xz"],
  ["zstd", Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), "zstd"],
  ["lz4 (legacy frame)", Buffer.from([0x02, 0x21, 0x4c, 0x18]), "lz4"],
  ["lz4", Buffer.from([0x04, 0x22, 0x4d, 0x18]), "lz4"],
];

export interface Payload {
  /** Human name of the compression ("lz4 (legacy frame)"). */
  format: string;
  compression: Compression;
  data: Buffer;
}

export function isElf(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === 0x7f454c46;
}

/** Finds and identifies the compressed kernel inside a bzImage. */
export function locatePayload(image: Buffer): Payload {
  if (image.length < 0x250 || image.toString("latin1", 0x202, 0x206) !== "HdrS") throw invalidArgument("not a bzImage (no HdrS setup header)");
  const version = image.readUInt16LE(0x206);
  if (version < 0x208) throw invalidArgument(`boot protocol ${version.toString(16)} is too old to locate the kernel payload`);
  const setupSects = image[0x1f1] || 4; // 0 means 4, per the boot protocol
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (length < 16 || start + length > image.length) throw invalidArgument("the bzImage's payload lies outside the file");
  const payload = image.subarray(start, start + length);
  for (const [format, magic, compression] of MAGICS) {
    if (!payload.subarray(0, magic.length).equals(magic)) continue;
    // Every format but gzip carries the decompressed size as 4 trailing bytes (size_append).
    const data = compression === "gzip" ? payload : payload.subarray(0, payload.length - 4);
    return { format, compression, data };
  }
  throw invalidArgument(`unsupported kernel compression (magic ${payload.subarray(0, 4).toString("hex")})`, "banger reads gzip, xz, lz4 and zstd kernels");
}

/**
 * Writes the uncompressed ELF kernel from `kernel` (a bzImage, or already an ELF vmlinux) to
 * `outPath`. Returns the payload's compression ("none" for an ELF input).
 */
export async function extractVmlinux(kernel: Buffer, outPath: string, signal?: AbortSignal): Promise<string> {
  if (isElf(kernel)) {
    await decodeToFile("none", kernel, outPath, MAX_VMLINUX, signal);
    return "none";
  }
  const payload = locatePayload(kernel);
  try {
    await decodeToFile(payload.compression, payload.data, outPath, MAX_VMLINUX, signal);
  } catch (err) {
    throw invalidArgument(`could not decompress the ${payload.format} kernel payload: ${(err as Error).message}`);
  }
  await requireElf(outPath, `the decompressed ${payload.format} payload`);
  return payload.format;
}

/** Fails unless `path` starts with an ELF header. */
export async function requireElf(path: string, what: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (!isElf(head)) throw invalidArgument(`${what} is not an ELF kernel`);
  } finally {
    await fh.close();
  }
}

/** "Linux version 6.1.0-26-cloud-amd64 (...)": the release string inside a kernel image. */
export async function kernelReleaseOf(path: string): Promise<string | undefined> {
  const needle = Buffer.from("Linux version ");
  const fh = await open(path, "r");
  try {
    const chunk = Buffer.alloc(4 * 1024 * 1024);
    let carry = Buffer.alloc(0);
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) return undefined;
      pos += bytesRead;
      const window = Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
      let at = window.indexOf(needle);
      while (at >= 0) {
        const m = /^Linux version ([A-Za-z0-9._+-]+) \(/.exec(window.toString("latin1", at, at + 200));
        if (m) return m[1];
        at = window.indexOf(needle, at + 1);
      }
      carry = window.subarray(Math.max(0, window.length - 256));
    }
  } finally {
    await fh.close();
  }
}
