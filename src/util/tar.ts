// Tar header blocks, decoded by hand: for the places that walk a tar's block structure
// themselves (bundle extraction's worker protocol, the PAX xattr sniffer) rather than through
// tar-stream. Only decoding; nothing here reads a stream or touches the filesystem.

export const TAR_BLOCK = 512;

/** Type names as tar-stream reports them, so one set of rules (bundle/members.ts) fits both. */
const TYPES: Record<string, string> = {
  "0": "file",
  "1": "link",
  "2": "symlink",
  "3": "character-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
  "7": "contiguous-file",
  x: "pax-header",
  g: "pax-global-header",
  L: "gnu-long-path",
  K: "gnu-long-link-path",
};

export interface TarHeader {
  name: string;
  /** tar-stream's names ("file", "directory", "symlink", "pax-header", ...), or "unknown-<flag>". */
  type: string;
  mode: number;
  /** Bytes of data that follow the header (before padding to a whole block). */
  size: number;
  linkname: string;
}

/** What earlier PAX or GNU long-name entries say about the next member. */
export interface HeaderOverrides {
  path?: string;
  linkpath?: string;
  size?: number;
}

/** Tar numeric field: octal text, or base-256 when the high bit of the first byte is set. */
export function decodeTarNumber(field: Buffer): number {
  if (field[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  return text === "" ? 0 : Number.parseInt(text, 8);
}

/** The data bytes of an entry rounded up to whole blocks. */
export function paddedSize(size: number): number {
  return size + ((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decodes one 512-byte header (ustar, GNU or v7), applying `overrides` from the PAX and GNU
 * long-name entries before it. Throws on a bad checksum or a malformed number: the archive is
 * damaged, and nothing after it can be trusted.
 */
export function decodeTarHeader(block: Buffer, overrides: HeaderOverrides = {}): TarHeader {
  if (block.length !== TAR_BLOCK) throw new Error("short tar header");
  if (!checksumMatches(block)) throw new Error("tar header checksum mismatch");
  const flag = block[156] === 0 ? "0" : String.fromCharCode(block[156]!);
  const ustar = block.toString("latin1", 257, 263) === "ustar\0";
  const prefix = ustar ? cString(block, 345, 155) : "";
  let name = cString(block, 0, 100);
  if (prefix) name = `${prefix}/${name}`;
  let type = TYPES[flag] ?? `unknown-${flag}`;
  if (flag === "0" && name.endsWith("/")) type = "directory"; // v7 directories
  const size = overrides.size ?? decodeTarNumber(block.subarray(124, 136));
  if (!Number.isSafeInteger(size) || size < 0) throw new Error("tar header has an invalid size");
  return {
    name: overrides.path ?? name,
    type,
    mode: decodeTarNumber(block.subarray(100, 108)),
    size: type === "directory" ? 0 : size,
    linkname: overrides.linkpath ?? cString(block, 157, 100),
  };
}

/** The overrides a PAX extended header's records carry (path, linkpath, size). */
export function paxOverrides(data: Buffer): HeaderOverrides {
  const out: HeaderOverrides = {};
  for (const [key, value] of parsePaxRecords(data)) {
    if (key === "path") out.path = value.toString("utf8");
    else if (key === "linkpath") out.linkpath = value.toString("utf8");
    else if (key === "size") {
      const n = Number(value.toString("latin1"));
      if (!Number.isSafeInteger(n) || n < 0) throw new Error("PAX header has an invalid size");
      out.size = n;
    }
  }
  return out;
}

/** Parses "<len> <key>=<value>\n" records, keeping values as raw bytes. */
export function parsePaxRecords(buf: Buffer): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = [];
  let rest = buf;
  while (rest.length > 0) {
    const space = rest.indexOf(0x20);
    if (space <= 0) break;
    const len = Number.parseInt(rest.subarray(0, space).toString("latin1"), 10);
    if (!Number.isSafeInteger(len) || len <= space + 1 || len > rest.length) break;
    const record = rest.subarray(space + 1, len - 1); // drop the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq < 0) break;
    out.push([record.subarray(0, eq).toString("utf8"), Buffer.from(record.subarray(eq + 1))]);
    rest = rest.subarray(len);
  }
  return out;
}

/** A GNU long name entry's data: the name, NUL-terminated. */
export function longName(data: Buffer): string {
  const nul = data.indexOf(0);
  return data.toString("utf8", 0, nul < 0 ? data.length : nul);
}

function cString(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString("utf8", offset, end < 0 || end > offset + length ? offset + length : end);
}

/** The stored checksum equals the sum of the header's bytes with the field itself as spaces (unsigned, or signed as old tars did). */
function checksumMatches(block: Buffer): boolean {
  const stored = decodeTarNumber(block.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}
