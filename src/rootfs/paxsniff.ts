// Raw PAX xattr capture. tar-stream decodes PAX records as UTF-8 text, which mangles binary
// values such as `SCHILY.xattr.security.capability`. This pass-through stream walks the same
// tar block structure alongside tar-stream and keeps the raw bytes of every SCHILY.xattr.*
// record, keyed by the byte offset where the owning entry's data starts (tar-stream reports
// the same number as `header.byteOffset`), so the two can be joined exactly. Every record it
// keeps counts against the reader's MetadataBudget, so no tar makes it hold more than that.
import { Transform, type TransformCallback } from "node:stream";
import { type MetadataBudget, orThrow } from "../util/paths.ts";
import { TAR_BLOCK as BLOCK, decodeTarNumber, isZeroBlock, paddedSize, parsePaxRecords } from "../util/tar.ts";

const XATTR_PREFIX = "SCHILY.xattr.";
/** Same cap tar-stream applies to long headers; anything larger is rejected there anyway. */
const MAX_PAX_BYTES = 1024 * 1024;

type State = { kind: "header" } | { kind: "skip"; left: number } | { kind: "pax"; left: number; pad: number };

export class PaxXattrSniffer extends Transform {
  /** Entry data offset -> xattr name (without the SCHILY prefix) -> raw value. */
  readonly xattrsByOffset = new Map<number, Map<string, Buffer>>();
  private pos = 0;
  private state: State = { kind: "header" };
  private headerBuf = Buffer.alloc(0);
  private paxChunks: Buffer[] = [];
  private pendingXattrs: Map<string, Buffer> | undefined;
  private pendingSize: number | undefined;

  /** `fail` makes the reader's error from a refusal (thrown here, it errors the stream). */
  constructor(
    private readonly budget: MetadataBudget,
    private readonly fail: (reason: string) => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.scan(chunk);
    } catch (err) {
      return cb(err as Error);
    }
    cb(null, chunk);
  }

  private scan(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      const st = this.state;
      if (st.kind === "skip") {
        const n = Math.min(st.left, chunk.length - i);
        st.left -= n;
        i += n;
        this.pos += n;
        if (st.left === 0) this.state = { kind: "header" };
      } else if (st.kind === "pax") {
        const n = Math.min(st.left, chunk.length - i);
        this.paxChunks.push(chunk.subarray(i, i + n));
        st.left -= n;
        i += n;
        this.pos += n;
        if (st.left === 0) {
          this.onPaxData(Buffer.concat(this.paxChunks));
          this.paxChunks = [];
          this.state = st.pad > 0 ? { kind: "skip", left: st.pad } : { kind: "header" };
        }
      } else {
        const n = Math.min(BLOCK - this.headerBuf.length, chunk.length - i);
        this.headerBuf = Buffer.concat([this.headerBuf, chunk.subarray(i, i + n)]);
        i += n;
        this.pos += n;
        if (this.headerBuf.length === BLOCK) {
          const block = this.headerBuf;
          this.headerBuf = Buffer.alloc(0);
          this.onHeader(block);
        }
      }
    }
  }

  private onHeader(block: Buffer): void {
    if (isZeroBlock(block)) return; // end-of-archive padding
    const flag = block[156] === 0 ? "0" : String.fromCharCode(block[156]!);
    const size = decodeTarNumber(block.subarray(124, 136));
    const padded = paddedSize(size);
    if (flag === "x") {
      if (size > MAX_PAX_BYTES) throw new Error("PAX header too large");
      this.state = size > 0 ? { kind: "pax", left: size, pad: padded - size } : { kind: "header" };
      return;
    }
    if (flag === "g" || flag === "L" || flag === "K") {
      // Global PAX records and GNU long names carry no per-entry xattrs we keep.
      if (padded > 0) this.state = { kind: "skip", left: padded };
      return;
    }
    const entrySize = this.pendingSize ?? size;
    if (this.pendingXattrs && this.pendingXattrs.size > 0) this.xattrsByOffset.set(this.pos, this.pendingXattrs);
    this.pendingXattrs = undefined;
    this.pendingSize = undefined;
    // tar-stream reads no data for directories (typeflag 5, or a v7 file whose name ends in '/').
    const nameEnd = block.indexOf(0, 0);
    const lastNameByte = block[(nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd) - 1];
    const isDir = flag === "5" || (flag === "0" && lastNameByte === 0x2f);
    const dataBytes = isDir ? 0 : paddedSize(entrySize);
    if (dataBytes > 0) this.state = { kind: "skip", left: dataBytes };
  }

  private onPaxData(buf: Buffer): void {
    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of parsePaxRecords(buf)) {
      if (key.startsWith(XATTR_PREFIX)) {
        orThrow(this.budget.spend([key], [value]), this.fail);
        xattrs.set(key.slice(XATTR_PREFIX.length), value);
      } else if (key === "size") this.pendingSize = Number.parseInt(value.toString("latin1"), 10);
    }
    this.pendingXattrs = xattrs;
  }
}
