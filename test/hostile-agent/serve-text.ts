// Test support, run as a program: a guest whose replies carry hostile text, and whose commands
// never finish, for a real bangerd and the real CLI (test/hostile-guest.test.ts). The fake
// agent (fake.ts) speaks the protocol; this file only declares what the guest answers.
//
//   node --import tsx test/hostile-agent/serve-text.ts SOCKET EXEC REPLIES
//
// EXEC: "hang" (an exec never ends) or "flood" (an exec writes HOSTILE on stdout and stderr as
// fast as the host's credit allows, for ever). Neither ever sends a RESULT.
// REPLIES: "valid" (ports and sessions follow the protocol's rules and carry HOSTILE where
// they may: process names, argv) or "rule-breaking" (HOSTILE also in a port's address and a
// session's name, which the rules forbid). Any other request gets an ERROR quoting HOSTILE.
import { FrameType, Stream } from "../../src/guest/frame.ts";
import { HOSTILE, fakeAgent, type FakeConn, type Opened } from "./fake.ts";

const [sock, execMode, replies] = process.argv.slice(2);
if (!sock || !["hang", "flood"].includes(execMode!) || !["valid", "rule-breaking"].includes(replies!)) {
  process.stderr.write("usage: serve-text.ts SOCKET hang|flood valid|rule-breaking\n");
  process.exit(2);
}
const breaksRules = replies === "rule-breaking";

function ports(): unknown {
  return { ports: [{ proto: "tcp", address: breaksRules ? HOSTILE.slice(0, 60) : "0.0.0.0", port: 80, pid: 7, command: HOSTILE }] };
}

function sessions(): unknown {
  const info = (name: string) => ({ name, pid: 9, argv: [HOSTILE, "--flag"], tty: false, started: "2026-01-01T00:00:00Z", state: "running", bytes: 0 });
  const named = breaksRules ? [`s\x1b[31m${HOSTILE}`.slice(0, 60), "ok-1"] : ["ok-1"];
  return { sessions: named.map(info) };
}

function exec(c: FakeConn, o: Opened): void {
  c.json(o.id, FrameType.Opened, { pid: 42 });
  if (execMode === "flood") for (const stream of [Stream.Out, Stream.Err]) c.flood(o.id, stream);
}

await fakeAgent(sock, (c, o) => {
  if (o.kind === "exec") return exec(c, o);
  if (o.kind === "ports") c.json(o.id, FrameType.Result, ports());
  else if (o.kind === "session.list") c.json(o.id, FrameType.Result, sessions());
  else c.json(o.id, FrameType.Error, { code: "unsupported", message: `${o.kind}${HOSTILE}` });
  c.frame(o.id, FrameType.Close);
});
process.stderr.write("ready\n");
