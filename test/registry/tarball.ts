// Building layer tars in tests: tar-stream's pack for ordinary entries, plus a raw PAX header
// for entries with binary xattrs (tar-stream's pack encodes PAX values as UTF-8 text).
import tar from "tar-stream";
import type { Tree, TreeEntry } from "../../src/rootfs/tree.ts";

export interface TarEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "character-device" | "block-device" | "fifo";
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Written as SCHILY.xattr.<name> PAX records, bytes exactly. */
  xattrs?: Record<string, Buffer>;
}

const END = 1024;

/** One entry packed alone, without the end-of-archive blocks. */
async function packOne(e: TarEntry): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(Buffer.from(c as Buffer)));
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  const type = e.type ?? "file";
  const header = {
    name: e.name,
    type,
    mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mtime: new Date((e.mtime ?? 1_700_000_000) * 1000),
    ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
    ...(e.devmajor !== undefined ? { devmajor: e.devmajor, devminor: e.devminor ?? 0 } : {}),
  };
  if (type === "file") pack.entry(header, e.content ?? "");
  else pack.entry(header);
  pack.finalize();
  await done;
  const all = Buffer.concat(chunks);
  return all.subarray(0, all.length - END);
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, "0")}\0`;
}

/** A ustar header block of type 'x' followed by the padded PAX records. */
export function paxBlock(records: Array<[string, Buffer]>): Buffer {
  const body = Buffer.concat(
    records.map(([key, value]) => {
      const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
  const h = Buffer.alloc(512);
  h.write("PaxHeader", 0);
  h.write(octal(0o644, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(body.length, 12), 124);
  h.write(octal(0, 12), 136);
  h.write("        ", 148);
  h.write("x", 156);
  h.write("ustar\u000000", 257, "latin1");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad]);
}

/** A complete tar of `entries`, in order. */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.xattrs) parts.push(paxBlock(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v])));
    parts.push(await packOne(e));
  }
  parts.push(Buffer.alloc(END));
  return Buffer.concat(parts);
}

/** A file capability blob (VFS_CAP_REVISION_2, all capabilities permitted+effective): not valid UTF-8. */
export const CAP_ALL_EP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);

/** A Tree as a user would list it: path -> "type uid:gid mode [-> target] [dev M:m] [xattrs k=hex]". */
export function describeTree(tree: Tree): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, e] of tree.entries) out[path] = describeEntry(e);
  return out;
}

function describeEntry(e: TreeEntry): string {
  let s = `${e.type} ${e.uid}:${e.gid} ${e.mode.toString(8).padStart(4, "0")}`;
  if (e.linkTarget !== undefined) s += ` -> ${e.linkTarget}`;
  if (e.devMajor !== undefined) s += ` dev ${e.devMajor}:${e.devMinor}`;
  if (e.xattrs)
    s += ` xattrs ${Object.entries(e.xattrs)
      .map(([k, v]) => `${k}=${v.toString("hex")}`)
      .join(",")}`;
  return s;
}
