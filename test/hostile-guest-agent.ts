// Test support (not a test): a fake guest agent speaking the real protocol (agent/PROTOCOL.md)
// on a Unix socket, reporting hostile text and misbehaving on exec. A fake because the real
// agent reports what a guest's /proc says, and making a guest list a process named with
// escape sequences, or hang its shell, would need a whole VM. Run as a process:
//   node --import tsx test/hostile-guest-agent.ts SOCKET RUNTIME_DIR EXEC_MODE
// RUNTIME_DIR only appears on the command line (the daemon adopts a "VMM" whose command line
// names its runtime dir); EXEC_MODE is "hang" (exec never ends) or "flood" (exec writes
// output as fast as credit allows, forever). Prints "ready" once listening.
import { createServer, type Socket } from "node:net";
import { pathToFileURL } from "node:url";
import { FrameDecoder, FrameType, INITIAL_WINDOW, MAGIC_SIZE, Stream, encodeFrame, encodeJSON, magic } from "../src/guest/frame.ts";

/** Every kind of terminal attack: C0 bytes, CSI, OSC 52 clipboard write, C1 CSI, bidi override, DEL. */
export const HOSTILE = `x\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\u009b31m\u202eevil\u2066\x7f${String.fromCharCode(...Array.from({ length: 32 }, (_, i) => i))}`;
/** A session name with a control sequence: the store's name rule must keep it out. */
const HOSTILE_SESSION = `s\x1b[31m${HOSTILE}`;

function onConnection(sock: Socket, execMode: string): void {
  const decoder = new FrameDecoder();
  let greeted = false;
  let buf = Buffer.alloc(0);
  const credit = new Map<string, number>(); // "channel:stream" -> bytes we may still send
  const send = (b: Buffer) => sock.write(b);
  const chunk = Buffer.alloc(32 << 10, HOSTILE);
  const flood = (ch: number, stream: Stream): void => {
    const key = `${ch}:${stream}`;
    while ((credit.get(key) ?? 0) >= chunk.length) {
      send(encodeFrame(ch, FrameType.Data, chunk, stream));
      credit.set(key, credit.get(key)! - chunk.length);
    }
  };
  const onOpen = (ch: number, open: { kind?: string }): void => {
    switch (open.kind) {
      case "ports":
        send(encodeJSON(ch, FrameType.Result, { ports: [{ proto: "tcp", address: HOSTILE.slice(0, 60), port: 80, pid: 7, command: HOSTILE }] }));
        break;
      case "session.list": {
        const info = (name: string) => ({ name, pid: 9, argv: [HOSTILE, "--flag"], tty: false, started: "2026-01-01T00:00:00Z", state: "running", bytes: 0 });
        send(encodeJSON(ch, FrameType.Result, { sessions: [info(HOSTILE_SESSION.slice(0, 60)), info("ok-1")] }));
        break;
      }
      case "exec":
        send(encodeJSON(ch, FrameType.Opened, { pid: 42 }));
        if (execMode === "flood") {
          for (const stream of [Stream.Out, Stream.Err]) {
            credit.set(`${ch}:${stream}`, INITIAL_WINDOW);
            flood(ch, stream);
          }
        }
        return; // never a RESULT: the command "runs" forever
      default:
        send(encodeJSON(ch, FrameType.Error, { code: "unsupported", message: `${open.kind}${HOSTILE}` }));
    }
    send(encodeFrame(ch, FrameType.Close));
  };
  sock.on("error", () => sock.destroy());
  sock.on("data", (chunk: Buffer) => {
    if (!greeted) {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < MAGIC_SIZE) return;
      chunk = buf.subarray(MAGIC_SIZE);
      greeted = true;
    }
    for (const f of decoder.push(chunk)) {
      if (f.type === FrameType.Hello) {
        const { nonce } = JSON.parse(f.payload.toString()) as { nonce?: string };
        const hello = { version: 1, agent: "banger-agent", agent_version: "0.0.0-hostile", arch: "amd64", pid1: true, max_payload: 1 << 20, window: INITIAL_WINDOW, features: ["health", "exec", "ports", "stats", "sessions"], nonce };
        send(Buffer.concat([magic(), encodeJSON(0, FrameType.Hello, hello)]));
      } else if (f.type === FrameType.Open) onOpen(f.channel, JSON.parse(f.payload.toString()) as { kind?: string });
      else if (f.type === FrameType.Window && credit.has(`${f.channel}:${f.stream}`)) {
        const key = `${f.channel}:${f.stream}`;
        credit.set(key, credit.get(key)! + f.payload.readUInt32BE(0));
        flood(f.channel, f.stream);
      } else if (f.type === FrameType.Close) for (const stream of [Stream.Out, Stream.Err]) credit.delete(`${f.channel}:${stream}`);
    }
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const [sockPath, , execMode = "hang"] = process.argv.slice(2);
  createServer((s) => onConnection(s, execMode)).listen(sockPath!, () => console.log("ready"));
}
