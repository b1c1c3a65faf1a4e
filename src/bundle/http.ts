// A small HTTP/1.1 GET client for bundle and catalog downloads, reading the socket straight
// into the receiver's memory. Node's http module allocates a fresh buffer for every socket
// read and runs each through its stream machinery: for a 128 MiB bundle that cost 60-80 ms of
// main-thread CPU, more than the whole transfer costs curl. Here net/tls `onread` puts the
// body bytes directly where the receiver asks (the feeder's batches), with no copy and no
// allocation per read.
//
// It speaks only what a download needs: one GET per connection (Connection: close), identity
// or chunked bodies, 1xx heads skipped, an idle timeout and cancellation. TLS is verified as
// Node's https does (the bundled CA store plus NODE_EXTRA_CA_CERTS). It does not follow
// redirects or judge status codes: source.ts does. Every bound is explicit: the response
// head, chunk-size lines and trailers have caps, and a body never exceeds what the receiver
// gives room for.
import net from "node:net";
import tls from "node:tls";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";

/** Where a body goes. `space()` is at least one byte; `commit(n)` says that many bytes were written at its start. */
export interface ByteSink {
  space(): Buffer;
  /**
   * Takes the `n` bytes just written into `space()`. A promise asks the reader to wait for
   * it before reading more (its rejection stops the transfer with that error); throwing
   * stops the transfer at once.
   */
  commit(n: number): Promise<void> | undefined;
}

export interface HttpResponse {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: ReadonlyMap<string, string>;
  /** Content-Length when the body is not chunked. */
  contentLength: number | undefined;
  /** Reads the whole body into `sink`; resolves with its length. Call at most once. */
  readInto(sink: ByteSink): Promise<number>;
  /** Drops the connection (a body that will not be read). */
  destroy(): void;
}

export interface GetOptions {
  signal?: AbortSignal;
  /** A connection idle this long fails the transfer. */
  idleTimeoutMs: number;
}

/** A response head larger than this is refused (Node's own limit is 16 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 1024;
const MAX_TRAILER_BYTES = 64 * 1024;
/** Reads of a chunked body land here first, then their data is copied to the sink. */
const SCRATCH_BYTES = 64 * 1024;

/** Sends GET `url` (http or https) and resolves once the response head arrived. */
export function httpGet(url: URL, opts: GetOptions): Promise<HttpResponse> {
  return new Exchange(url, opts).response;
}

/** A connection failure before or during the body; `source.ts` names the URL. */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

type Phase =
  | { t: "head"; fill: number }
  | { t: "paused" }
  | { t: "body"; sink: ByteSink; framing: BodyFraming }
  | { t: "done" };

/** How the body's end is known. */
type BodyFraming = { t: "length"; left: number } | { t: "close" } | { t: "chunked"; decoder: ChunkDecoder };

class Exchange {
  readonly response: Promise<HttpResponse>;
  private readonly socket: net.Socket;
  private readonly head = Buffer.allocUnsafe(MAX_HEAD_BYTES);
  private scratch: Buffer | undefined;
  /** What nextBuffer lent the socket when that was the sink's own space. */
  private lentToSink: Buffer | undefined;
  private phase: Phase = { t: "head", fill: 0 };
  /** Body bytes that arrived with the head. */
  private early: Buffer = Buffer.alloc(0);
  private received = 0;
  private contentLength: number | undefined;
  private chunked = false;
  private settleHead!: { resolve: (r: HttpResponse) => void; reject: (err: Error) => void };
  private settleBody: { resolve: (n: number) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly url: URL,
    private readonly opts: GetOptions,
  ) {
    this.response = new Promise((resolve, reject) => (this.settleHead = { resolve, reject }));
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1"); // IPv6 literals come bracketed
    const onread = { buffer: () => this.nextBuffer(), callback: (n: number, buf: Buffer) => this.onRead(buf.subarray(0, n)) };
    const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
    this.socket =
      url.protocol === "https:"
        ? // onread is a socket.connect() option tls.connect takes too; @types/node leaves it out.
          tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, onread } as tls.ConnectionOptions, () => this.sendRequest())
        : net.connect({ host, port, onread }, () => this.sendRequest());
    this.socket.setTimeout(opts.idleTimeoutMs);
    this.socket.on("timeout", () => this.fail(new BangerError(ErrorCode.Timeout, `${url.host}: no data for ${opts.idleTimeoutMs / 1000} s`, "check the network or the mirror, then retry")));
    this.socket.on("error", (err: NodeJS.ErrnoException) => this.fail(new TransportError(err.code ?? err.message, err.code)));
    this.socket.on("end", () => this.onEnd());
    this.socket.on("close", () => this.onEnd());
    if (opts.signal?.aborted) this.fail(cancelled());
    opts.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  private readonly onAbort = () => this.fail(cancelled());

  private sendRequest(): void {
    const target = `${this.url.pathname}${this.url.search}`;
    this.socket.write(`GET ${target} HTTP/1.1\r\nHost: ${this.url.host}\r\nUser-Agent: banger\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n`);
  }

  /**
   * The memory the next socket read fills. Node asks right after each read, so it is decided
   * before a pause: the read after a resume goes where this said then (onRead checks).
   */
  private nextBuffer(): Buffer {
    const p = this.phase;
    this.lentToSink = undefined;
    if (p.t === "head") return this.head.subarray(p.fill);
    if (p.t === "body" && p.framing.t !== "chunked") {
      const room = p.sink.space();
      // With a known length, never read past the body into the receiver's memory.
      this.lentToSink = p.framing.t === "length" ? room.subarray(0, Math.max(1, Math.min(room.length, p.framing.left))) : room;
      return this.lentToSink;
    }
    return (this.scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES));
  }

  /** `bytes` just arrived, in the memory nextBuffer lent; returns false to pause reading. */
  private onRead(bytes: Buffer): boolean {
    try {
      const p = this.phase;
      if (p.t === "head") return this.onHeadBytes(p, bytes.length);
      if (p.t !== "body") return false; // bytes after the body: ignored, the connection is dropped
      if (p.framing.t === "chunked") return this.deliverChunked(p.sink, p.framing.decoder, bytes);
      // Read straight into the sink, or (the first read after the head) into scratch memory.
      if (this.lentToSink && bytes.buffer === this.lentToSink.buffer && bytes.byteOffset === this.lentToSink.byteOffset) return this.accept(p.sink, p.framing, bytes.length);
      return this.deliverCopy(p.sink, p.framing, bytes);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  private onHeadBytes(p: { t: "head"; fill: number }, n: number): boolean {
    const from = Math.max(0, p.fill - 3);
    p.fill += n;
    const end = this.head.subarray(0, p.fill).indexOf("\r\n\r\n", from, "latin1");
    if (end < 0) {
      if (p.fill === MAX_HEAD_BYTES) throw new TransportError(`response head larger than ${MAX_HEAD_BYTES / 1024} KiB`);
      return true;
    }
    const parsed = parseHead(this.head.toString("latin1", 0, end));
    const rest = this.head.subarray(end + 4, p.fill);
    if (parsed.status < 200 && parsed.status !== 101) {
      // An interim response (100 Continue, 103 Early Hints): the real head follows.
      const n = rest.copy(this.head, 0);
      p.fill = 0;
      return n > 0 ? this.onHeadBytes(p, n) : true;
    }
    this.early = Buffer.from(rest);
    this.chunked = parsed.chunked;
    this.contentLength = parsed.contentLength;
    this.phase = { t: "paused" };
    this.settleHead.resolve({
      status: parsed.status,
      headers: parsed.headers,
      contentLength: parsed.contentLength,
      readInto: (sink) => this.readInto(sink),
      destroy: () => this.finish(),
    });
    return false;
  }

  private readInto(sink: ByteSink): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.phase.t !== "paused") return Promise.reject(new Error("the body was already read or dropped"));
    const framing: BodyFraming = this.chunked ? { t: "chunked", decoder: new ChunkDecoder() } : this.contentLength !== undefined ? { t: "length", left: this.contentLength } : { t: "close" };
    const body = new Promise<number>((resolve, reject) => (this.settleBody = { resolve, reject }));
    this.phase = { t: "body", sink, framing };
    try {
      const early = this.early;
      const goOn = framing.t === "chunked" ? this.deliverChunked(sink, framing.decoder, early) : this.deliverCopy(sink, framing, early);
      if (goOn && this.phase.t === "body") this.socket.resume();
      if (this.phase.t === "body" && framing.t === "length" && framing.left === 0) this.complete();
    } catch (err) {
      this.fail(err as Error);
    }
    return body;
  }

  /** Counts `n` bytes the socket read into the sink's space. */
  private accept(sink: ByteSink, framing: Exclude<BodyFraming, { t: "chunked" }>, n: number): boolean {
    if (framing.t === "length" && n > framing.left) n = framing.left; // bytes past the length (sent along with the head) are dropped
    this.received += n;
    const wait = n > 0 ? sink.commit(n) : undefined;
    if (framing.t === "length") {
      framing.left -= n;
      if (framing.left === 0) return this.complete();
    }
    return this.waitFor(wait);
  }

  /** Copies bytes already in memory (the head's leftovers) into the sink. */
  private deliverCopy(sink: ByteSink, framing: Exclude<BodyFraming, { t: "chunked" }>, bytes: Buffer): boolean {
    let goOn = true;
    for (let off = 0; off < bytes.length && this.phase.t === "body"; ) {
      const room = sink.space();
      const n = bytes.copy(room, 0, off, Math.min(bytes.length, off + room.length));
      off += n;
      goOn = this.accept(sink, framing, n) && goOn;
    }
    return goOn;
  }

  private deliverChunked(sink: ByteSink, decoder: ChunkDecoder, bytes: Buffer): boolean {
    let wait: Promise<void>[] = [];
    const ended = decoder.feed(bytes, (data) => {
      for (let off = 0; off < data.length; ) {
        const room = sink.space();
        const n = data.copy(room, 0, off, Math.min(data.length, off + room.length));
        off += n;
        this.received += n;
        const w = sink.commit(n);
        if (w) wait.push(w);
      }
    });
    if (ended) return this.complete();
    return this.waitFor(wait.length ? Promise.all(wait).then(() => undefined) : undefined);
  }

  /** Pauses reading until `wait` settles; false means paused. The idle timer stops meanwhile: the wait is ours, not the server's. */
  private waitFor(wait: Promise<void> | undefined): boolean {
    if (!wait) return true;
    this.socket.setTimeout(0);
    wait.then(
      () => {
        if (this.phase.t !== "body") return;
        this.socket.setTimeout(this.opts.idleTimeoutMs);
        this.socket.resume();
      },
      (err: Error) => this.fail(err),
    );
    return false;
  }

  private complete(): false {
    const body = this.settleBody;
    this.finish();
    body?.resolve(this.received);
    return false;
  }

  private onEnd(): void {
    const p = this.phase;
    if (p.t === "done") return;
    if (p.t === "body" && p.framing.t === "close") return void this.complete();
    const where = p.t === "body" || p.t === "paused" ? `after ${this.received} body bytes` : "before a complete response head";
    this.fail(new TransportError(`connection closed ${where}`, "ECONNRESET"));
  }

  private fail(err: Error): void {
    if (this.phase.t === "done") return;
    this.failure ??= err;
    const body = this.settleBody;
    this.finish();
    this.settleHead.reject(this.failure);
    body?.reject(this.failure);
  }

  private finish(): void {
    this.phase = { t: "done" };
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    this.socket.destroy();
  }
}

interface Head {
  status: number;
  headers: Map<string, string>;
  contentLength: number | undefined;
  chunked: boolean;
}

/** Parses a response head (without its final blank line); anything off is one clear error. */
export function parseHead(text: string): Head {
  const lines = text.split("\r\n");
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
  const ce = headers.get("content-encoding")?.toLowerCase();
  if (ce !== undefined && ce !== "identity") throw new TransportError(`unexpected content-encoding ${JSON.stringify(ce)} (banger asked for none)`);
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
