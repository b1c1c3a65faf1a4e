// Test support: a tiny ustar writer with binary PAX records, so tests can build exactly the
// tars they need (odd owners, devices, xattrs, hostile paths) without root or GNU tar.

import tar from "tar-stream";
export interface RawTarEntry {
  name: string;
  /** Typeflag: "0" file, "1" hardlink, "2" symlink, "3" char, "4" block, "5" dir, "6" fifo. */
  type: "0" | "1" | "2" | "3" | "4" | "5" | "6";
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  data?: Buffer;
  /** PAX records written before the entry, values as raw bytes. */
  pax?: Record<string, Buffer>;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(e: { name: string; type: string; mode: number; uid: number; gid: number; size: number; mtime: number; linkname: string; devmajor: number; devminor: number }): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(e.name, 0, 100, "utf8");
  b.write(octal(e.mode, 8), 100, "latin1");
  b.write(octal(e.uid, 8), 108, "latin1");
  b.write(octal(e.gid, 8), 116, "latin1");
  b.write(octal(e.size, 12), 124, "latin1");
  b.write(octal(e.mtime, 12), 136, "latin1");
  b.write("        ", 148, "latin1");
  b.write(e.type, 156, "latin1");
  b.write(e.linkname, 157, 100, "utf8");
  b.write("ustar\0", 257, "latin1");
  b.write("00", 263, "latin1");
  b.write(octal(e.devmajor, 8), 329, "latin1");
  b.write(octal(e.devminor, 8), 337, "latin1");
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

function padded(data: Buffer): Buffer {
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return Buffer.concat([data, Buffer.alloc(pad)]);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Serialises entries as an uncompressed tar. */
export function buildTar(entries: RawTarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      const data = Buffer.concat(Object.entries(e.pax).map(([k, v]) => paxRecord(k, v)));
      parts.push(header({ name: "PaxHeader", type: "x", mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0, linkname: "", devmajor: 0, devminor: 0 }), padded(data));
    }
    const data = e.data ?? Buffer.alloc(0);
    parts.push(
      header({
        name: e.name,
        type: e.type,
        mode: e.mode ?? (e.type === "5" ? 0o755 : 0o644),
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        size: data.length,
        mtime: e.mtime ?? 1_700_000_000,
        linkname: e.linkname ?? "",
        devmajor: e.devmajor ?? 0,
        devminor: e.devminor ?? 0,
      }),
      padded(data),
    );
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

/**
 * The member names of a tar stream, in order. A failing stream fails this too (a bare
 * `pipe` would leave the reader waiting for ever, as a hung test).
 */
export async function tarMemberNames(stream: NodeJS.ReadableStream): Promise<string[]> {
  const extract = tar.extract();
  stream.on("error", (err: Error) => extract.destroy(err));
  stream.pipe(extract as unknown as NodeJS.WritableStream);
  const names: string[] = [];
  for await (const entry of extract) {
    names.push(entry.header.name);
    entry.resume();
  }
  return names;
}
