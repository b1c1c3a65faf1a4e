// Test support, run as a program: the hostile fake agent (fake.ts) as its own process, so a
// test can measure the host's memory without the fake's, and a real bangerd can adopt it
// as a VM's agent (its command line names the socket, which lies in the VM's runtime dir).
//
//   node --import tsx test/hostile-agent/serve.ts SOCKET [ONE_SHOT]
//
// exec runs the misbehaviour its argv[0] names (MISBEHAVIOURS), else answers "hostile-ok";
// tcp (a port forward) gets "data-after-eof".
// One-shot kinds (stats, ports, health, ...) get ONE_SHOT: "flood" (full windows on streams
// they do not have, no CLOSE), "eof-then-data" (RESULT, then EOF and DATA on a stream nobody
// reads), "never-close" (a valid RESULT, no CLOSE). Default: stats "eof-then-data", ports "flood".
import { FrameType, Stream } from "../../src/guest/frame.ts";
import { MISBEHAVIOURS, answerNeverClose, eofThenData, fakeAgent, floodOneShot, type FakeConn, type Opened } from "./fake.ts";

const [sock, oneShotMode] = process.argv.slice(2);
if (!sock) {
  process.stderr.write("usage: serve.ts SOCKET [flood|eof-then-data|never-close]\n");
  process.exit(2);
}

const ONE_SHOT: Record<string, (c: FakeConn, o: Opened) => void> = { flood: floodOneShot, "eof-then-data": eofThenData, "never-close": answerNeverClose };
const DEFAULT_ONE_SHOT: Record<string, (c: FakeConn, o: Opened) => void> = { stats: eofThenData, ports: floodOneShot };

function wellBehavedExec(c: FakeConn, o: Opened): void {
  c.json(o.id, FrameType.Opened, { pid: 1 });
  c.frame(o.id, FrameType.Data, Buffer.from("hostile-ok\n"), Stream.Out);
  c.frame(o.id, FrameType.Eof, undefined, Stream.Out);
  c.frame(o.id, FrameType.Eof, undefined, Stream.Err);
  c.json(o.id, FrameType.Result, { exit_code: 0 });
  c.frame(o.id, FrameType.Close);
}

await fakeAgent(sock, (c, o) => {
  if (o.kind === "exec") {
    const argv = Array.isArray(o.params.argv) ? (o.params.argv as unknown[]) : [];
    const bad = MISBEHAVIOURS[String(argv[0])];
    return void (bad ? bad(c, o) : wellBehavedExec(c, o));
  }
  if (o.kind === "tcp") return void MISBEHAVIOURS["data-after-eof"]!(c, o);
  const oneShot = (oneShotMode ? ONE_SHOT[oneShotMode] : DEFAULT_ONE_SHOT[o.kind]) ?? answerNeverClose;
  oneShot(c, o);
});
process.stderr.write("ready\n");
