// The byte-stream part of the wire: what a streaming call (exec, file copies, session attach,
// vm.tcp/vm.ssh, console logs) emits as events and takes as `$/input`, and the window the
// caller keeps in flight. The daemon's bridging (Readable <-> call) is daemon/streams.ts.

/** What the caller sends with `$/input` while streaming. */
export type StreamInput = { t: "in"; data: Buffer } | { t: "in"; b64: string } | { t: "eof" } | { t: "resize"; rows: number; cols: number } | { t: "signal"; name: string };

/** What the daemon emits while streaming. */
export type StreamEvent = { t: "out"; fd: 1 | 2; data: Buffer } | { t: "started"; pid?: number } | { t: "ack"; n: number };

/**
 * An event as StreamEvent, or undefined for anything else: rpc hands events over as unknown
 * (it carries any method's), so a client checks the shape here instead of casting.
 */
export function streamEvent(event: unknown): StreamEvent | undefined {
  const ev = event as Record<string, unknown> | null;
  if (typeof ev !== "object" || ev === null) return undefined;
  if (ev.t === "out") return Buffer.isBuffer(ev.data) && (ev.fd === 1 || ev.fd === 2) ? { t: "out", fd: ev.fd, data: ev.data } : undefined;
  if (ev.t === "ack") return typeof ev.n === "number" ? { t: "ack", n: ev.n } : undefined;
  if (ev.t === "started") return typeof ev.pid === "number" ? { t: "started", pid: ev.pid } : { t: "started" };
  return undefined;
}

/** The bytes of an `out` event, or undefined for any other event. */
export function outBytes(event: unknown): { fd: 1 | 2; data: Buffer } | undefined {
  const ev = streamEvent(event);
  return ev?.t === "out" ? { fd: ev.fd, data: ev.data } : undefined;
}

/**
 * Most bytes the caller may have sent and not yet seen acknowledged. Enough to keep a
 * workspace copy flowing while the daemon forwards to the guest; also the bound on what
 * the daemon buffers per call.
 */
export const INPUT_WINDOW_BYTES = 4 * 1024 * 1024;
/** Largest `in` chunk the caller sends (before base64): small pieces are batched up to this. */
export const INPUT_CHUNK_BYTES = 256 * 1024;
