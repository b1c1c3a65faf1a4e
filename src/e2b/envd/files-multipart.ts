// A streaming multipart/form-data reader for POST /files: each part's body is handed over as
// a stream while it arrives (a file is never held whole), the next part is read once the
// consumer is done with it. Bounded: part headers, the number of parts and the bytes read.
import { PassThrough, type Readable } from "node:stream";

export interface Part {
  /** The form field (`file` for uploads). */
  name: string;
  /** The part's filename, as the SDK sends it (the file's path), decoded. */
  filename: string | undefined;
  body: Readable;
}

export class MultipartError extends Error {}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PARTS = 1000;
/** Body bytes handed on at once, at most (the rest waits for the consumer). */
const CHUNK = 256 * 1024;

/** The boundary of a multipart/form-data content type, or undefined when it is not one. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^multipart\/form-data\s*;/i.test(contentType)) return undefined;
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * Chunks of a stream, one per next(), undefined at its end. Unlike for-await, stopping early
 * leaves the stream alone (an HTTP request destroyed would take its response with it): the
 * caller may resume() it to discard the rest.
 */
export function chunksOf(stream: Readable): AsyncIterator<Buffer> {
  let ended = false;
  let failed: Error | undefined;
  stream.on("end", () => (ended = true));
  stream.on("error", (err) => (failed = err));
  const wait = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        stream.off("readable", done);
        stream.off("end", done);
        stream.off("error", done);
        stream.off("close", done);
        resolve();
      };
      stream.on("readable", done);
      stream.on("end", done);
      stream.on("error", done);
      stream.on("close", done);
    });
  return {
    async next(): Promise<IteratorResult<Buffer>> {
      for (;;) {
        if (failed) throw failed;
        const chunk = stream.read() as Buffer | string | null;
        if (chunk !== null) return { value: Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk), done: false };
        if (ended || stream.destroyed) {
          if (failed) throw failed;
          if (!ended) throw new MultipartError("the upload was cut off");
          return { value: undefined, done: true };
        }
        await wait();
      }
    },
  };
}

/** Reads buffered bytes from an async chunk source, counting them against maxBytes. */
class Reader {
  buf: Buffer = Buffer.alloc(0);
  private total = 0;
  private done = false;
  constructor(
    private readonly src: AsyncIterator<Buffer>,
    private readonly maxBytes: number,
  ) {}

  /** More bytes into buf; false at the end of the source. */
  async fill(): Promise<boolean> {
    if (this.done) return false;
    const { value, done } = await this.src.next();
    if (done) {
      this.done = true;
      return false;
    }
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
    this.total += chunk.length;
    if (this.total > this.maxBytes) throw new MultipartError(`upload larger than ${this.maxBytes} bytes`);
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    return true;
  }

  /** Everything up to `delim` (which is consumed), at most `max` bytes before it. */
  async until(delim: Buffer, max: number): Promise<Buffer> {
    for (;;) {
      const i = this.buf.indexOf(delim);
      if (i >= 0) {
        const head = this.buf.subarray(0, i);
        this.buf = this.buf.subarray(i + delim.length);
        return head;
      }
      if (this.buf.length > max + delim.length) throw new MultipartError("malformed multipart body (a header or preamble too long)");
      if (!(await this.fill())) throw new MultipartError("multipart body ended early");
    }
  }

  async need(n: number): Promise<void> {
    while (this.buf.length < n) if (!(await this.fill())) throw new MultipartError("multipart body ended early");
  }
}

/**
 * Calls onPart for each part in order, streaming its body; resolves after the closing
 * boundary. onPart must consume (or destroy) the body; a failure in it ends the reading.
 */
export async function readMultipart(body: Readable, boundary: string, maxBytes: number, onPart: (part: Part) => Promise<void>): Promise<void> {
  const r = new Reader(chunksOf(body), maxBytes);
  const delim = Buffer.from(`\r\n--${boundary}`);
  // The first boundary may open the body without the CRLF before it.
  r.buf = Buffer.from("\r\n");
  await r.until(delim, MAX_HEADER_BYTES);
  for (let parts = 0; ; parts++) {
    await r.need(2);
    const after = r.buf.subarray(0, 2).toString("latin1");
    r.buf = r.buf.subarray(2);
    if (after === "--") return; // the closing boundary
    if (after !== "\r\n") throw new MultipartError("malformed multipart boundary");
    if (parts >= MAX_PARTS) throw new MultipartError(`more than ${MAX_PARTS} parts`);
    const headers = parseHeaders((await r.until(Buffer.from("\r\n\r\n"), MAX_HEADER_BYTES)).toString("utf8"));
    const out = new PassThrough({ highWaterMark: CHUNK });
    let consumerDone = false;
    const consumer = onPart({ ...headers, body: out }).finally(() => {
      consumerDone = true;
      if (!out.writableEnded) out.destroy(); // it gave up early: wake the pump, drop the rest
    });
    consumer.catch(() => undefined);
    await pumpBody(r, delim, out, () => consumerDone || out.destroyed).catch((err: unknown) => {
      out.destroy(err as Error);
      throw err;
    });
    await consumer;
  }
}

/** Copies bytes up to the next delimiter into out (waiting while it is full), then ends it. */
async function pumpBody(r: Reader, delim: Buffer, out: PassThrough, gone: () => boolean): Promise<void> {
  const write = async (chunk: Buffer) => {
    if (chunk.length === 0 || gone()) return;
    if (!out.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => (out.off("drain", done), out.off("close", done), resolve());
        out.on("drain", done);
        out.on("close", done);
      });
    }
  };
  for (;;) {
    const i = r.buf.indexOf(delim);
    if (i >= 0) {
      await write(Buffer.from(r.buf.subarray(0, i)));
      r.buf = r.buf.subarray(i + delim.length);
      out.end();
      return;
    }
    // Keep what could be the start of the delimiter; hand on the rest at once (so the
    // buffer stays small, however small the chunks the client sends).
    const keep = delim.length - 1;
    if (r.buf.length > keep) {
      await write(Buffer.from(r.buf.subarray(0, r.buf.length - keep)));
      r.buf = r.buf.subarray(r.buf.length - keep);
    }
    if (!(await r.fill())) throw new MultipartError("multipart body ended inside a part");
  }
}

function parseHeaders(text: string): { name: string; filename: string | undefined } {
  let name = "";
  let filename: string | undefined;
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== "content-disposition") continue;
    const value = line.slice(colon + 1);
    name = param(value, "name") ?? "";
    filename = param(value, "filename");
  }
  return { name, filename };
}

/** A quoted or bare parameter of a Content-Disposition value (form-data escapes ", CR and LF as %22, %0D, %0A). */
function param(value: string, key: string): string | undefined {
  const re = new RegExp(`;\\s*${key}="((?:[^"\\\\]|\\\\.)*)"|;\\s*${key}=([^;\\s"]+)`, "i");
  const m = re.exec(value);
  if (!m) return undefined;
  const raw = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!;
  return raw.replace(/%22/g, '"').replace(/%0D/gi, "\r").replace(/%0A/gi, "\n");
}
