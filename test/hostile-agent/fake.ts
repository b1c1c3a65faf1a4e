// Test support: a fake guest agent on a Unix socket that speaks the real protocol
// (agent/PROTOCOL.md, encoded with the host's own src/guest/frame.ts) and then misbehaves
// as a hostile guest would. Mocks by necessity: no real agent can be made to misbehave, and
// making a real guest list a process named with escape sequences, or hang its shell, would
// need a whole VM. The only fake agent of the tests: used by the client tests
// (client.test.ts) and, run as a program, as the agent of a "VM" adopted by a real bangerd:
// serve.ts (protocol misbehaviours, daemon.test.ts) and serve-text.ts (hostile text, an exec
// that never ends or floods: test/hostile-guest.test.ts).
import { createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { join } from "node:path";
import { after } from "node:test";
import { makeTempHome } from "../helpers.ts";
import { ErrorCode } from "../../src/util/errors.ts";
import { DATA_CHUNK, FrameDecoder, FrameType, INITIAL_WINDOW, Stream, encodeFrame, encodeJSON, magic, type Frame } from "../../src/guest/frame.ts";

/** Every kind of terminal attack: C0 bytes, CSI, OSC 52 clipboard write, C1 CSI, bidi override, DEL. */
export const HOSTILE = `x\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\u009b31m\u202eevil\u2066\x7f${String.fromCharCode(...Array.from({ length: 32 }, (_, i) => i))}`;

/** A channel the host opened: its id, kind and parameters. */
export interface Opened {
  id: number;
  kind: string;
  params: Record<string, unknown>;
}

/** The agent's answer to a host handshake (magic + HELLO echoing the host's nonce, unless one is given). */
export function answer(hostHello: Buffer, opts: { nonce?: string; version?: number } = {}): Buffer {
  const [f] = new FrameDecoder().push(hostHello.subarray(8));
  const theirs = (JSON.parse(f!.payload.toString()) as { nonce: string }).nonce;
  const hello = {
    version: opts.version ?? 1,
    agent_version: "fake",
    arch: "amd64",
    pid1: true,
    features: ["health", "exec", "stats", "ports", "sessions", "tcp", "files.get", "fs", "fs.watch"],
    nonce: opts.nonce ?? theirs,
  };
  return Buffer.concat([magic(), encodeJSON(0, FrameType.Hello, hello)]);
}

/** A plain Unix-socket server standing in for the guest: `onConn` scripts everything. */
export async function fakePeer(path: string, onConn: (s: Socket) => void): Promise<Server> {
  const server = createServer(onConn);
  server.listen(path);
  await once(server, "listening");
  return server;
}

/** Answers the handshake like a real agent, then hands the socket over. */
export function helloThen(afterHello: (s: Socket) => void) {
  return (s: Socket) => {
    s.once("data", (d: Buffer) => {
      s.write(answer(d));
      afterHello(s);
    });
  };
}

/**
 * For a test file: a temporary home for sockets, and fake peers (raw) or fake agents
 * (protocol-speaking) listening there, all removed after the file's tests.
 */
export function useFakes(): {
  home: string;
  peer(name: string, onConn: (s: Socket) => void): Promise<string>;
  agent(name: string, onOpen: (c: FakeConn, o: Opened) => void): Promise<string>;
} {
  const { home, cleanup } = makeTempHome();
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    cleanup();
  });
  const listen = async (name: string, start: (path: string) => Promise<Server>) => {
    const path = join(home, name);
    servers.push(await start(path));
    return path;
  };
  return {
    home,
    peer: (name, onConn) => listen(name, (p) => fakePeer(p, onConn)),
    agent: (name, onOpen) => listen(name, (p) => fakeAgent(p, onOpen)),
  };
}

/** One host connection to the fake agent, after the handshake. */
export class FakeConn {
  /** Output streams being flooded ("channel:stream"): what is sent again and the credit left. */
  private readonly floods = new Map<string, { chunk: Buffer; credit: number }>();

  constructor(readonly socket: Socket) {}

  frame(channel: number, type: FrameType, payload: Buffer = Buffer.alloc(0), stream: Stream = Stream.In): void {
    this.raw(encodeFrame(channel, type, payload, stream));
  }

  json(channel: number, type: FrameType, value: unknown): void {
    this.raw(encodeJSON(channel, type, value));
  }

  raw(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Writes one byte per `tickMs`: the slowest guest that still makes progress. */
  async drip(bytes: Buffer, tickMs = 2): Promise<void> {
    for (const b of bytes) {
      if (this.socket.destroyed) return;
      this.socket.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, tickMs));
    }
  }

  /**
   * Sends `chunk` on an output stream for ever, as fast as the host's credit allows: a guest
   * that floods but follows the protocol. The host's WINDOW frames refill the credit (grant);
   * its CLOSE ends the flood (release).
   */
  flood(channel: number, stream: Stream, chunk: Buffer = Buffer.alloc(DATA_CHUNK, HOSTILE)): void {
    this.floods.set(`${channel}:${stream}`, { chunk, credit: INITIAL_WINDOW });
    this.pump(channel, stream);
  }

  grant(channel: number, stream: Stream, bytes: number): void {
    const flood = this.floods.get(`${channel}:${stream}`);
    if (!flood) return;
    flood.credit += bytes;
    this.pump(channel, stream);
  }

  release(channel: number): void {
    for (const stream of [Stream.Out, Stream.Err]) this.floods.delete(`${channel}:${stream}`);
  }

  private pump(channel: number, stream: Stream): void {
    const flood = this.floods.get(`${channel}:${stream}`)!;
    for (; flood.credit >= flood.chunk.length; flood.credit -= flood.chunk.length) this.frame(channel, FrameType.Data, flood.chunk, stream);
  }

  /** A header announcing `length` bytes (beyond the limit, for the oversized-length case). */
  header(channel: number, type: number, length: number, stream = 0): Buffer {
    const h = Buffer.alloc(12);
    h.writeUInt32BE(length >>> 0, 0);
    h.writeUInt32BE(channel, 4);
    h.writeUInt8(type, 8);
    h.writeUInt8(stream, 9);
    return h;
  }
}

/**
 * A fake agent: answers handshakes, decodes the host's frames (the real decoder), keeps the
 * credit the host grants (for FakeConn.flood), and calls `onOpen` for every channel the host
 * opens. What it does then is the test's choice.
 */
export async function fakeAgent(path: string, onOpen: (conn: FakeConn, open: Opened) => void): Promise<Server> {
  return fakePeer(
    path,
    helloThen((s) => {
      const conn = new FakeConn(s);
      const decoder = new FrameDecoder();
      s.on("error", () => undefined); // the host may hang up on us: that is the point
      s.on("data", (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch {
          return void s.destroy();
        }
        for (const f of frames) {
          if (f.type === FrameType.Window) conn.grant(f.channel, f.stream, f.payload.readUInt32BE(0));
          if (f.type === FrameType.Close) conn.release(f.channel);
          if (f.type !== FrameType.Open) continue;
          const params = JSON.parse(f.payload.toString()) as Record<string, unknown>;
          onOpen(conn, { id: f.channel, kind: String(params.kind), params });
        }
      });
    }),
  );
}

const validStats = {
  memory: { total: 1 << 30, free: 1 << 29, available: 1 << 29 },
  cpu: { count: 1, user: 1, system: 1, idle: 1 },
  disk: { path: "/", total: 1 << 30, free: 1 << 29, available: 1 << 29 },
  load: [0, 0, 0],
  uptime_seconds: 1,
};

/** A reply a host accepts for each one-shot kind. */
export function validResult(kind: string): unknown {
  if (kind === "stats") return validStats;
  if (kind === "ports") return { ports: [] };
  if (kind === "health") return { version: "fake", arch: "amd64", pid1: true, hostname: "h", kernel: "k", agent_uptime_ms: 1 };
  return {};
}

const window = Buffer.alloc(INITIAL_WINDOW, 0x61);

/**
 * The misbehaviours, by name. Each gets a channel the host opened (an exec, unless the name
 * says otherwise) and does one hostile thing; the comment says what the host must do.
 */
export const MISBEHAVIOURS: Record<string, (c: FakeConn, o: Opened) => void | Promise<void>> = {
  /** EOF on stdout, then more stdout: a violation (once crashed the daemon). */
  "data-after-eof": (c, o) => {
    c.json(o.id, FrameType.Opened, { pid: 1 });
    c.frame(o.id, FrameType.Eof, undefined, Stream.Out);
    c.frame(o.id, FrameType.Data, Buffer.from("more"), Stream.Out);
  },
  /** Frames for a channel the host never opened: a violation. */
  "unknown-channel": (c, o) => {
    c.json(o.id, FrameType.Opened, { pid: 1 });
    c.frame(0x7fffffff, FrameType.Data, Buffer.from("who?"), Stream.Out);
  },
  /** OPENED twice, RESULT twice, CLOSE twice, then data for the closed channel: all extra frames dropped; the exec succeeds. */
  "duplicate-replies": (c, o) => {
    for (let i = 0; i < 2; i++) c.json(o.id, FrameType.Opened, { pid: 1 });
    c.frame(o.id, FrameType.Data, Buffer.from("ok\n"), Stream.Out);
    c.frame(o.id, FrameType.Eof, undefined, Stream.Out);
    c.frame(o.id, FrameType.Eof, undefined, Stream.Err);
    for (let i = 0; i < 2; i++) c.json(o.id, FrameType.Result, { exit_code: 0 });
    for (let i = 0; i < 2; i++) c.frame(o.id, FrameType.Close);
    c.frame(o.id, FrameType.Data, window, Stream.Out);
  },
  /** One frame far beyond the 256 KiB window: a violation. */
  "window-ignored": (c, o) => {
    c.json(o.id, FrameType.Opened, { pid: 1 });
    c.frame(o.id, FrameType.Data, Buffer.alloc(1 << 20), Stream.Out);
  },
  /** A header announcing 4 GiB: refused before anything is buffered. */
  "oversized-length": (c, o) => {
    c.json(o.id, FrameType.Opened, { pid: 1 });
    c.raw(c.header(o.id, FrameType.Data, 0xffffffff, Stream.Out));
  },
  /** A frame type only the host may send (OPEN): a violation. */
  "wrong-type": (c, o) => c.json(o.id, FrameType.Open, { kind: "exec" }),
  /** A frame type that does not exist, and a stream that does not: violations the decoder catches. */
  "unknown-type": (c, o) => c.raw(c.header(o.id, 99, 0)),
  "unknown-stream": (c, o) => c.raw(c.header(o.id, FrameType.Data, 0, 7)),
  /** An ERROR on channel 0 mid-connection: the agent ended the connection. */
  "connection-error": (c) => c.json(0, FrameType.Error, { code: "protocol", message: "bye\u001b[2J" }),
  /** A RESULT that is not JSON: a violation. */
  "garbled-result": (c, o) => c.frame(o.id, FrameType.Result, Buffer.from("{not json")),
  /** The whole exec, one byte every 2 ms: slow, but whole; it succeeds. */
  "slow-drip": (c, o) =>
    c.drip(
      Buffer.concat([
        encodeJSON(o.id, FrameType.Opened, { pid: 1 }),
        encodeFrame(o.id, FrameType.Data, Buffer.from("drip\n"), Stream.Out),
        encodeFrame(o.id, FrameType.Eof, undefined, Stream.Out),
        encodeFrame(o.id, FrameType.Eof, undefined, Stream.Err),
        encodeJSON(o.id, FrameType.Result, { exit_code: 0 }),
      ]),
    ),
  /** Half a header, then silence: the connection ends once the reply deadline passes. */
  "half-frame": (c, o) => {
    c.json(o.id, FrameType.Opened, { pid: 1 });
    c.raw(c.header(o.id, FrameType.Data, 10, Stream.Out).subarray(0, 6));
  },
};

const violation = (re: RegExp) => ({ code: ErrorCode.Integrity, message: re });

/** What the host must make of each misbehaviour: the exec's outcome. */
export const EXPECTED: Record<string, { ok?: string; error?: { code: number; message: RegExp } }> = {
  "data-after-eof": { error: violation(/protocol violation: data on stream 1 of channel \d+ \(exec\) after its EOF$/) },
  "unknown-channel": { error: violation(/channel 2147483647, which the host never opened/) },
  "duplicate-replies": { ok: "ok\n" },
  "window-ignored": { error: violation(/exceeded its flow-control window/) },
  "oversized-length": { error: violation(/frame of 4294967295 bytes exceeds the 1048576-byte limit/) },
  "wrong-type": { error: violation(/frame type 2 not allowed from the agent/) },
  "unknown-type": { error: violation(/unknown frame type 99/) },
  "unknown-stream": { error: violation(/unknown stream 7/) },
  "connection-error": { error: { code: ErrorCode.Failed, message: /^guest agent: connection: bye \[2J$/ } },
  "garbled-result": { error: violation(/reply is not valid JSON/) },
  "slow-drip": { ok: "drip\n" },
  "half-frame": { error: violation(/a frame did not arrive whole within 300 ms \(6 bytes of it came\)/) },
};

/**
 * What a hostile agent does for the one-shot kinds: a valid RESULT, then a full window of
 * data on both output streams (which one-shot kinds do not have), and never a CLOSE.
 * Before the fix the host kept every such channel and its data: ~512 KiB per request.
 */
export function floodOneShot(c: FakeConn, o: Opened): void {
  c.frame(o.id, FrameType.Data, window, Stream.Out);
  c.frame(o.id, FrameType.Data, window, Stream.Err);
  c.json(o.id, FrameType.Result, validResult(o.kind));
}

/** A valid RESULT, then EOF and one DATA frame on a stream nobody reads (the dashboard's stats poll once crashed the daemon on this). */
export function eofThenData(c: FakeConn, o: Opened): void {
  c.json(o.id, FrameType.Result, validResult(o.kind));
  c.frame(o.id, FrameType.Eof, undefined, Stream.Out);
  c.frame(o.id, FrameType.Data, Buffer.from("late"), Stream.Out);
}

/** A well-behaved one-shot answer, but never a CLOSE. */
export function answerNeverClose(c: FakeConn, o: Opened): void {
  c.json(o.id, FrameType.Result, validResult(o.kind));
}
