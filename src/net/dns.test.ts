// The `.vm` DNS server on loopback, queried by the real dig, fed garbage and flooded.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import diagnostics from "node:diagnostics_channel";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { run } from "../util/exec.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { answerQuery, startDnsServer, type DnsServer, type VmAddresses } from "./index.ts";

const VMS: Record<string, VmAddresses> = {
  alpha: { ipv4: ["172.30.0.2"], ipv6: ["fd00::2"] },
  // Many addresses: a ~1.3 KiB answer to a 28-byte query, so a non-reading client's replies pile up fast.
  wide: { ipv4: Array.from({ length: 40 }, (_, i) => `172.30.1.${i + 1}`), ipv6: Array.from({ length: 20 }, (_, i) => `fd00::1:${i + 1}`) },
  "beta.v2": { ipv4: ["172.30.0.3"] },
};
let server: DnsServer;

before(async () => {
  server = await startDnsServer({ host: "127.0.0.1", port: 0, lookup: (name) => VMS[name] });
});
after(() => server.close());

async function dig(name: string, type = "A", ...extra: string[]): Promise<{ status: string; answers: string[] }> {
  const res = await run(["dig", "@127.0.0.1", "-p", String(server.port), name, type, "+time=2", "+tries=1", ...extra]);
  const status = /status: (\w+)/.exec(res.stdout)?.[1] ?? `no reply: ${res.stdout}`;
  const answers = res.stdout
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith(";"))
    .map((l) => l.split(/\s+/).slice(3).join(" "));
  return { status, answers };
}

test("A and AAAA for <vm>.vm, case-insensitive, over UDP and TCP", async () => {
  assert.deepEqual(await dig("alpha.vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("ALPHA.Vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("alpha.vm", "AAAA"), { status: "NOERROR", answers: ["AAAA fd00::2"] });
  assert.deepEqual(await dig("beta.v2.vm", "A", "+tcp"), { status: "NOERROR", answers: ["A 172.30.0.3"] });
  assert.deepEqual(await dig("beta.v2.vm", "AAAA"), { status: "NOERROR", answers: [] }, "no IPv6: empty answer, not an error");
});

test("unknown VMs are NXDOMAIN; every other name is REFUSED", async () => {
  assert.equal((await dig("nosuch.vm")).status, "NXDOMAIN");
  assert.equal((await dig("vm")).status, "NXDOMAIN");
  assert.equal((await dig("example.com")).status, "REFUSED");
  assert.equal((await dig("alpha.vm.example.com")).status, "REFUSED");
  assert.equal((await dig("example.com", "A", "+tcp")).status, "REFUSED");
});

test("garbage is dropped and the server keeps answering", async () => {
  const udp = createSocket("udp4");
  for (const size of [0, 1, 11, 12, 13, 100, 512, 4000]) {
    for (let i = 0; i < 5; i++) udp.send(randomBytes(size), server.port, "127.0.0.1");
  }
  // A header claiming 65535 questions with nothing behind it.
  udp.send(Buffer.from("abcd0100ffff000000000000", "hex"), server.port, "127.0.0.1");
  await new Promise((r) => setTimeout(r, 100));
  udp.close();
  for (const payload of [randomBytes(300), Buffer.from([0xff, 0xff, 1, 2, 3]), Buffer.from([0, 5, 1, 2, 3, 4, 5])]) {
    await new Promise<void>((resolve) => {
      const c = connect(server.port, "127.0.0.1", () => c.end(payload));
      c.on("error", () => resolve());
      c.on("close", () => resolve());
      c.resume();
    });
  }
  assert.deepEqual(await dig("alpha.vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("alpha.vm", "A", "+tcp"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
});

test("a failing lookup gives SERVFAIL; responses are never answered", () => {
  const query = Buffer.from("12340100000100000000000005616c70686102766d0000010001", "hex"); // alpha.vm A, RD
  const servfail = answerQuery(query, () => {
    throw new Error("store gone");
  });
  assert.equal(servfail!.readUInt16BE(2) & 0xf, 2);
  const bad = answerQuery(query, () => ({ ipv4: ["not-an-ip"] }));
  assert.equal(bad!.readUInt16BE(2) & 0xf, 2);
  const response = Buffer.from(query);
  response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
  assert.equal(
    answerQuery(response, () => undefined),
    undefined,
  );
});

test("a port already in use is a clear error", async () => {
  await assert.rejects(startDnsServer({ host: "127.0.0.1", port: server.port, lookup: () => undefined }), (err: BangerError) => {
    assert.equal(err.code, ErrorCode.Unavailable);
    assert.match(err.message, /cannot serve DNS on 127\.0\.0\.1:\d+: EADDRINUSE/);
    return true;
  });
});

/** One TCP-framed query for wide.vm ANY. */
const FRAMED_QUERY = (() => {
  const q = Buffer.from("123401000001000000000000047769646502766d0000ff0001", "hex");
  return Buffer.concat([Buffer.from([0, q.length]), q]);
})();

/** A client that pipelines queries as fast as the server takes them and never reads a reply. */
function floodWithoutReading(port: number, ms: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.pause(); // never read: replies pile up in the server unless it stops reading
      const burst = Buffer.concat(Array.from({ length: 2048 }, () => FRAMED_QUERY));
      const deadline = Date.now() + ms;
      const pump = (): void => {
        while (Date.now() < deadline && socket.write(burst));
        if (Date.now() < deadline) socket.once("drain", pump);
      };
      pump();
      resolve(socket);
    });
    socket.once("error", () => undefined);
    socket.once("connect", () => socket.removeListener("error", reject));
  });
}

/** The server side of every TCP connection accepted while `fn` runs (node's documented net.server.socket channel). */
async function watchingServerSockets<T>(fn: (sockets: Socket[]) => Promise<T>): Promise<T> {
  const sockets: Socket[] = [];
  const onSocket = (msg: unknown) => void sockets.push((msg as { socket: Socket }).socket);
  diagnostics.subscribe("net.server.socket", onSocket);
  try {
    return await fn(sockets);
  } finally {
    diagnostics.unsubscribe("net.server.socket", onSocket);
  }
}

test("TCP clients that pipeline and never read are pushed back: the server buffers little per connection and keeps answering", async () => {
  await watchingServerSockets(async (sockets) => {
    const floods = await Promise.all(Array.from({ length: 4 }, () => floodWithoutReading(server.port, 3000)));
    let maxQueued = 0; // reply bytes waiting in the server for a client that does not read
    let maxUnread = 0; // query bytes the server took in but has not answered
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      for (const s of sockets) {
        maxQueued = Math.max(maxQueued, s.writableLength);
        maxUnread = Math.max(maxUnread, s.readableLength);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(sockets.length, 4);
    // The old server read every query and queued every reply: megabytes per connection in a few seconds.
    assert.ok(maxQueued <= 16 * 1024 + 512, `a connection held ${maxQueued} bytes of unsent replies`);
    assert.ok(maxUnread <= 128 * 1024, `a connection held ${maxUnread} bytes of unread queries`);
    assert.deepEqual(await dig("alpha.vm", "A", "+tcp"), { status: "NOERROR", answers: ["A 172.30.0.2"] }, "another client is still answered");
    for (const f of floods) f.destroy();
  });
});

test("a connection that stops reading is closed after the idle limit; one that lives too long after the lifetime", async () => {
  const short = await startDnsServer({ host: "127.0.0.1", port: 0, lookup: (name) => VMS[name], tcp: { idleMs: 300, lifetimeMs: 1500 } });
  try {
    const closedAfter = (socket: Socket): Promise<number> => {
      const t0 = Date.now();
      return new Promise((r) => socket.once("close", () => r(Date.now() - t0)));
    };
    const stuck = await floodWithoutReading(short.port, 500);
    assert.ok((await closedAfter(stuck)) < 2000, "a stalled pipelining client is dropped");
    // A slow drip that never goes idle still ends at the lifetime limit.
    const drip = connect(short.port, "127.0.0.1");
    drip.resume();
    const timer = setInterval(() => drip.write(FRAMED_QUERY), 100);
    const lived = await closedAfter(drip);
    clearInterval(timer);
    assert.ok(lived >= 1400 && lived < 3000, `a chatty connection lived ${lived} ms`);
  } finally {
    await short.close();
  }
});
