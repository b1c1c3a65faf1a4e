// The QMP client against a stand-in server on a Unix socket (QEMU's own QMP is exercised by
// every VM test; this checks what those cannot force: the order bytes arrive in, replies out
// of order, errors, a connection closed or a reply never sent).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { QmpClient, qmpCommand } from "./qmp.ts";

const dir = mkdtempSync(join(tmpdir(), "qmp-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const GREETING = `${JSON.stringify({ QMP: { version: {}, capabilities: [] } })}\n`;

/** A QMP stand-in: `onConnection` gets each connection and the commands it sends (parsed), and answers them. */
async function fakeQmp(onConnection: (sock: Socket, lines: AsyncIterable<{ execute: string; id: number; arguments?: unknown }>) => Promise<void>): Promise<{ path: string; server: Server }> {
  const path = join(dir, `q${n++}.sock`);
  const server = createServer((sock) => {
    sock.setEncoding("utf8");
    const queue: { execute: string; id: number }[] = [];
    let wake: (() => void) | undefined;
    let buf = "";
    sock.on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        queue.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      wake?.();
    });
    sock.on("error", () => undefined);
    const lines = {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length > 0) yield queue.shift()!;
          await new Promise<void>((r) => (wake = r));
        }
      },
    };
    void onConnection(sock, lines).catch(() => sock.destroy());
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server };
}

const reply = (sock: Socket, id: number, ret: unknown) => sock.write(`${JSON.stringify({ return: ret, id })}\n`);

test("qmpCommand sends the capabilities negotiation and its command before the greeting: one round trip", async () => {
  const seenBeforeGreeting: string[] = [];
  const { path, server } = await fakeQmp(async (sock, lines) => {
    // The greeting is held back until both lines are in: a client that waited for it would hang here.
    const it = lines[Symbol.asyncIterator]();
    const caps = (await it.next()).value;
    const cmd = (await it.next()).value;
    seenBeforeGreeting.push(caps.execute, cmd.execute);
    sock.write(GREETING);
    reply(sock, caps.id, {});
    reply(sock, cmd.id, { status: "running", args: cmd.arguments });
  });
  try {
    const r = await qmpCommand<{ status: string; args: unknown }>(path, "query-status", { x: 1 }, 2000);
    assert.deepEqual(r, { status: "running", args: { x: 1 } });
    assert.deepEqual(seenBeforeGreeting, ["qmp_capabilities", "query-status"]);
  } finally {
    server.close();
  }
});

test("a command's timeout counts from QEMU's greeting, not from the wait for the monitor (each step has its own)", async () => {
  const { path, server } = await fakeQmp(async (sock, lines) => {
    await new Promise((r) => setTimeout(r, 200)); // another client holds the monitor
    sock.write(GREETING);
    for await (const line of lines) {
      if (line.execute !== "qmp_capabilities") await new Promise((r) => setTimeout(r, 200)); // then the command takes its time
      reply(sock, line.id, line.execute);
    }
  });
  try {
    assert.equal(await qmpCommand(path, "query-status", undefined, 300), "query-status");
  } finally {
    server.close();
  }
});

test("pipelined commands on one client get their own replies, whatever order they come in", async () => {
  const { path, server } = await fakeQmp(async (sock, lines) => {
    sock.write(GREETING);
    const held: { execute: string; id: number }[] = [];
    for await (const line of lines) {
      if (line.execute === "qmp_capabilities") reply(sock, line.id, {});
      else held.push(line);
      if (held.length === 3) for (const h of held.reverse()) reply(sock, h.id, h.execute);
    }
  });
  const client = await QmpClient.connect(path, 2000);
  try {
    const got = await Promise.all(["a", "b", "c"].map((c) => client.execute<string>(c)));
    assert.deepEqual(got, ["a", "b", "c"]);
  } finally {
    client.close();
    server.close();
  }
});

test("an error reply, a reply never sent and a connection closed each fail their own command", async () => {
  const { path, server } = await fakeQmp(async (sock, lines) => {
    sock.write(GREETING);
    for await (const line of lines) {
      if (line.execute === "qmp_capabilities") reply(sock, line.id, {});
      else if (line.execute === "bad") sock.write(`${JSON.stringify({ error: { class: "GenericError", desc: "no such thing" }, id: line.id })}\n`);
      else if (line.execute === "ok") reply(sock, line.id, 7);
      else if (line.execute === "hang") continue;
      else if (line.execute === "quit") sock.destroy();
    }
  });
  try {
    const client = await QmpClient.connect(path, 2000);
    await assert.rejects(client.execute("bad"), (err: BangerError) => err.code === ErrorCode.Failed && err.message === "QMP error GenericError: no such thing");
    await assert.rejects(client.execute("hang", undefined, 100), (err: BangerError) => err.code === ErrorCode.Timeout && /QMP hang got no answer in 100 ms/.test(err.message));
    assert.equal(await client.execute("ok"), 7, "the connection still works after both");
    const hanging = client.execute("hang", undefined, 5000);
    assert.deepEqual(await client.execute("quit"), {}, "quit's close is its success");
    await assert.rejects(hanging, /QMP connection closed before the reply/);
    await assert.rejects(client.execute("ok"), /QMP connection closed before ok/);
  } finally {
    server.close();
  }
});

test("a server that closes before greeting, or sends a line past the bound, fails the call", async () => {
  const closing = await fakeQmp(async (sock) => {
    sock.destroy();
  });
  const flooding = await fakeQmp(async (sock) => {
    sock.write(GREETING);
    sock.write("x".repeat(2 * 1024 * 1024));
  });
  try {
    await assert.rejects(qmpCommand(closing.path, "query-status", undefined, 2000), /QMP connection closed/);
    await assert.rejects(qmpCommand(flooding.path, "query-status", undefined, 2000), /QMP message too large/);
  } finally {
    closing.server.close();
    flooding.server.close();
  }
});
