// Reading a Debian/Ubuntu `linux-image-*.deb` without dpkg: the `ar` container is parsed by
// hand (bounded), its data.tar.{xz,zst,gz} is decoded by the xz/zstd binaries or zlib and read
// with tar-stream. Only the bzImage (`boot/vmlinuz-*`) and the module tree
// (`[usr/]lib/modules/<version>/`) are kept. The package is untrusted: member names are
// checked against a strict pattern, sizes are capped, and files are created exclusively in a
// directory we own.
import { createReadStream } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Readable, pipeline } from "node:stream";
import tar from "tar-stream";
import { BangerError, cancelled, invalidArgument, resourceError } from "../util/errors.ts";
import { shown as showText } from "../util/paths.ts";
import { compressionOfName, decodeStream } from "./decode.ts";

const AR_MAGIC = "!<arch>\n";
const AR_HEADER = 60;
const MAX_AR_MEMBERS = 16;
const MAX_VMLINUZ = 128 * 1024 * 1024;
/** All of data.tar's members, kept (the module tree) or skipped: a decompression bomb is stopped at its header, not read through. */
const MAX_DATA_BYTES = 4 * 1024 * 1024 * 1024;
const MAX_TAR_ENTRIES = 100_000;
/** Module tree paths: plain names only (no "..", no odd characters). */
const SAFE_REL = /^(?:[A-Za-z0-9_+,@-][A-Za-z0-9._+,@-]*\/)*[A-Za-z0-9_+,@-][A-Za-z0-9._+,@-]*$/;

export interface ArMember {
  name: string;
  offset: number;
  size: number;
}

function badDeb(path: string, why: string): BangerError {
  return invalidArgument(`${path} is not a usable kernel package: ${why}`, "pass a linux-image-*.deb from Debian or Ubuntu, or a kernel directory");
}

/** Lists the members of an ar archive (the .deb container), checking every bound. */
export async function listArMembers(path: string, shown = path): Promise<ArMember[]> {
  const fh = await open(path, "r");
  try {
    const { size: fileSize } = await fh.stat();
    const magic = Buffer.alloc(8);
    await fh.read(magic, 0, 8, 0);
    if (magic.toString("latin1") !== AR_MAGIC) throw badDeb(shown, "not an ar archive");
    const members: ArMember[] = [];
    let pos = 8;
    while (pos < fileSize) {
      if (members.length >= MAX_AR_MEMBERS) throw badDeb(shown, "too many ar members");
      const hdr = Buffer.alloc(AR_HEADER);
      const { bytesRead } = await fh.read(hdr, 0, AR_HEADER, pos);
      if (bytesRead < AR_HEADER || hdr.toString("latin1", 58, 60) !== "`\n") throw badDeb(shown, "truncated or corrupt ar header");
      const name = hdr.toString("latin1", 0, 16).trim().replace(/\/$/, "");
      const sizeText = hdr.toString("latin1", 48, 58).trim();
      const size = /^\d{1,10}$/.test(sizeText) ? Number(sizeText) : NaN;
      const offset = pos + AR_HEADER;
      if (!Number.isSafeInteger(size) || offset + size > fileSize) throw badDeb(shown, `ar member ${showText(name)} is truncated`);
      members.push({ name, offset, size });
      pos = offset + size + (size % 2); // members are 2-byte aligned
    }
    return members;
  } finally {
    await fh.close();
  }
}

export interface DebContents {
  /** The compressed kernel image (bzImage). */
  vmlinuz: Buffer;
  /** Version from the file name `boot/vmlinuz-<version>`. */
  vmlinuzVersion: string;
  /** Where the module tree `lib/modules/<version>/` was written, if the package has one. */
  modulesDir?: string;
  modulesVersion?: string;
}

/** Extracts the kernel image and module tree of a .deb; modules go under `workDir`. Messages name `shown`. */
export async function readKernelDeb(path: string, workDir: string, signal?: AbortSignal, shown = path): Promise<DebContents> {
  const members = await listArMembers(path, shown);
  if (members[0]?.name !== "debian-binary") throw badDeb(shown, "the ar archive is not a Debian package");
  const data = members.find((m) => /^data\.tar(\.(xz|zst|gz))?$/.test(m.name));
  if (!data) throw badDeb(shown, "no data.tar member");
  const raw = createReadStream(path, { start: data.offset, end: data.offset + data.size - 1 });
  const tarStream = decodeStream(compressionOfName(data.name), raw, signal);
  const found: Partial<DebContents> = {};
  await readDataTar(tarStream, workDir, found, signal).catch((err: unknown) => {
    raw.destroy();
    tarStream.destroy();
    if (signal?.aborted) throw cancelled();
    if (err instanceof BangerError) throw err;
    // A full disk while unpacking is the host's problem, not the package's.
    throw resourceError(err, { path: workDir }) ?? badDeb(shown, `data.tar: ${(err as Error).message}`);
  });
  if (!found.vmlinuz || !found.vmlinuzVersion) throw badDeb(shown, "no boot/vmlinuz-* in the package");
  return found as DebContents;
}

async function readDataTar(input: Readable, workDir: string, found: Partial<DebContents>, signal?: AbortSignal): Promise<void> {
  const extract = tar.extract();
  pipeline(input, extract as unknown as NodeJS.WritableStream, (err) => {
    if (err) extract.destroy(err);
  });
  let entries = 0;
  let dataBytes = 0;
  for await (const entry of extract) {
    if (signal?.aborted) throw cancelled();
    if (++entries > MAX_TAR_ENTRIES) throw invalidArgument("the package has too many files");
    const name = entry.header.name.replace(/^\.\//, "");
    const size = entry.header.size ?? 0;
    dataBytes += size;
    if (dataBytes > MAX_DATA_BYTES) throw invalidArgument(`the package's data is larger than ${MAX_DATA_BYTES} bytes`);
    const boot = /^boot\/vmlinuz-([A-Za-z0-9._+-]+)$/.exec(name);
    const mod = /^(?:usr\/)?lib\/modules\/([A-Za-z0-9._+-]+)\/(.+)$/.exec(name);
    if (boot && entry.header.type === "file") {
      if (size > MAX_VMLINUZ) throw invalidArgument(`${name} is larger than ${MAX_VMLINUZ} bytes`);
      found.vmlinuz = await collect(entry as AsyncIterable<Buffer>);
      found.vmlinuzVersion = boot[1];
    } else if (mod && entry.header.type === "file" && SAFE_REL.test(mod[2]!) && /(\.ko(\.xz|\.zst|\.gz)?|^modules\.[a-z.]+)$/.test(mod[2]!)) {
      if (found.modulesVersion && found.modulesVersion !== mod[1]) throw invalidArgument("the package holds modules for more than one kernel version");
      found.modulesVersion = mod[1];
      found.modulesDir = join(workDir, "modules-tree");
      await writeExclusive(join(found.modulesDir, mod[2]!), entry as AsyncIterable<Buffer>);
    }
    entry.resume();
  }
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

async function writeExclusive(path: string, body: AsyncIterable<Buffer>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, "wx", 0o644);
  try {
    for await (const chunk of body) await fh.write(chunk);
  } finally {
    await fh.close();
  }
}
