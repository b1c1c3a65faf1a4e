// The HTTP/1.1 response wire format as http.ts reads it: where a head ends, what a head says
// (status, headers, Content-Length, chunked or not), and the chunked body decoder. Pure
// parsing with explicit caps (chunk-size lines, trailers); the connection, the caps on the head
// and on early bytes, and the flow into the receiver are http.ts's.

const MAX_CHUNK_LINE = 1024;
const MAX_TRAILER_BYTES = 64 * 1024;

/** A connection failure before or during the body; `source.ts` names the URL. */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * Where a response head ends: at the first blank line. Line ends are CRLF or, as RFC 9112
 * lets a recipient accept, a bare LF, in any mix ("\n\n", "\r\n\n", "\n\r\n", "\r\n\r\n").
 */
export function headEnd(buf: Buffer, from: number): { at: number; length: number } | undefined {
  for (let lf = buf.indexOf(0x0a, from); lf >= 0; lf = buf.indexOf(0x0a, lf + 1)) {
    const blank = buf[lf + 1] === 0x0a ? 1 : buf[lf + 1] === 0x0d && buf[lf + 2] === 0x0a ? 2 : 0;
    if (blank === 0) continue;
    const at = lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf;
    return { at, length: lf - at + 1 + blank };
  }
  return undefined;
}

interface Head {
  status: number;
  headers: Map<string, string>;
  contentLength: number | undefined;
  chunked: boolean;
}

/** Parses a response head (without its final blank line); anything off is one clear error. */
export function parseHead(text: string): Head {
  const lines = text.split(/\r?\n/);
  const m = /^HTTP\/1\.[01] ([1-9]\d\d)(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) throw new TransportError(`not an HTTP/1.x response: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) throw new TransportError(`malformed response header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const te = headers.get("transfer-encoding")?.toLowerCase();
  if (te !== undefined && te !== "chunked") throw new TransportError(`unsupported transfer-encoding ${JSON.stringify(te)}`);
  // A Content-Encoding is not undone: banger asked for none, and mirrors that label a .zst file
  // "zstd" send its bytes as they are; the caller's sha256 judges them either way.
  let contentLength: number | undefined;
  const cl = headers.get("content-length");
  if (cl !== undefined && te === undefined) {
    const values = new Set(cl.split(",").map((v) => v.trim()));
    const only = [...values][0]!;
    if (values.size !== 1 || !/^\d{1,15}$/.test(only)) throw new TransportError(`bad content-length ${JSON.stringify(cl.slice(0, 40))}`);
    contentLength = Number(only);
  }
  return { status: Number(m[1]), headers, contentLength, chunked: te === "chunked" };
}

/**
 * Decodes `Transfer-Encoding: chunked` incrementally: feed it whatever the socket read; it
 * calls `data` with each piece of payload and returns true once the last chunk and its
 * trailers ended.
 */
export class ChunkDecoder {
  private state: "size" | "data" | "data-crlf" | "trailer" | "end" = "size";
  private line = "";
  private left = 0;
  private trailerBytes = 0;

  feed(bytes: Buffer, data: (piece: Buffer) => void): boolean {
    let i = 0;
    while (i < bytes.length && this.state !== "end") {
      if (this.state === "data") {
        const n = Math.min(this.left, bytes.length - i);
        data(bytes.subarray(i, i + n));
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = "data-crlf";
        continue;
      }
      const nl = bytes.indexOf(10, i);
      const upto = nl < 0 ? bytes.length : nl + 1;
      this.line += bytes.toString("latin1", i, upto);
      i = upto;
      if (this.line.length > (this.state === "trailer" ? MAX_TRAILER_BYTES : MAX_CHUNK_LINE)) throw new TransportError("malformed chunked body: line too long");
      if (nl < 0) continue;
      const line = this.line.replace(/\r?\n$/, "");
      this.line = "";
      this.onLine(line);
    }
    return this.state === "end";
  }

  private onLine(line: string): void {
    if (this.state === "data-crlf") {
      if (line !== "") throw new TransportError("malformed chunked body: missing CRLF after a chunk");
      this.state = "size";
    } else if (this.state === "size") {
      const m = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
      if (!m) throw new TransportError(`malformed chunked body: bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
      this.left = parseInt(m[1]!, 16);
      this.state = this.left === 0 ? "trailer" : "data";
    } else if (this.state === "trailer") {
      if (line === "") this.state = "end";
      else if ((this.trailerBytes += line.length) > MAX_TRAILER_BYTES) throw new TransportError("malformed chunked body: trailers too large");
    }
  }
}
