// The guests' DNS server against hostile packets: queries built to blow up when answered,
// upstream replies that re-encode larger than they arrived (compression), records that cost
// far more memory than wire bytes, and fuzz through the real sockets. Everything on
// loopback: the server, a raw upstream of the test's own (test/kits/dns.ts), and the "guests".
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import dnsPacket from "dns-packet";
import fc from "fast-check";
import { Forwarder, type DnsAccess, type DnsServer, type ForwarderLimits } from "./index.ts";
import { RawUpstream, rawRecord, rawResponse, serveGuests, type RawReply } from "../../test/kits/dns.ts";

const GUESTS: Record<string, DnsAccess> = { "127.0.0.2": "forward", "127.0.0.4": "local" };
const STRANGER = "127.0.0.9";

let upstream: RawUpstream;
const servers: DnsServer[] = [];
/** What the upstream answers; each test sets it. */
let upstreamReply: RawReply = () => undefined;

before(async () => {
  upstream = await new RawUpstream("127.0.0.1", (q, t) => upstreamReply(q, t)).start();
});
after(async () => {
  for (const s of servers) await s.close();
  await upstream.close();
});

async function serve(limits: Partial<ForwarderLimits> = {}) {
  const served = await serveGuests({ guests: GUESTS, upstreams: () => [{ host: "127.0.0.1", port: upstream.port }], limits });
  servers.push(served.server);
  return served;
}

/** One message over UDP from `from`; the reply's bytes, or undefined after `ms`. */
async function askUdp(server: DnsServer, from: string, msg: Buffer, ms = 2000): Promise<Buffer | undefined> {
  const sock = createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, from, () => r()));
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ms);
      sock.once("message", (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      sock.send(msg, server.port, "127.0.0.1");
    });
  } finally {
    sock.close();
  }
}

/** One message over TCP from `from`; the reply's bytes, or undefined if the connection ends first. */
function askTcp(server: DnsServer, from: string, msg: Buffer, ms = 5000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const conn = connect({ port: server.port, host: "127.0.0.1", localAddress: from });
    let buf = Buffer.alloc(0);
    const done = (r: Buffer | undefined) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(undefined), ms);
    conn.on("error", () => done(undefined));
    conn.on("close", () => done(undefined));
    conn.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      conn.write(Buffer.concat([len, msg]));
    });
    conn.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
  });
}

const query = (name: string, type = "A", id = 7) => dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as "A" }] });
const rcodeOf = (reply: Buffer) => reply.readUInt16BE(2) & 0xf;

/** A query of `n` questions: the first a 254-byte name, the others 2-byte pointers to it (6 bytes each). */
function questionBomb(n: number): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0x1234, 0);
  head.writeUInt16BE(0x0100, 2);
  head.writeUInt16BE(n, 4);
  const label = Buffer.concat([Buffer.from([62]), Buffer.alloc(62, 0x61)]);
  const first = Buffer.concat([label, label, label, label, Buffer.from([0, 0, 1, 0, 1])]);
  const rest = Buffer.alloc(6 * (n - 1));
  for (let i = 0; i < n - 1; i++) {
    rest.writeUInt16BE(0xc00c, i * 6);
    rest.writeUInt32BE(0x00010001, i * 6 + 2);
  }
  return Buffer.concat([head, first, rest]);
}

test("a query whose questions decompress to a huge reply gets a small FORMERR, from anyone, over UDP and TCP", async () => {
  const { server } = await serve();
  const bomb = questionBomb(300); // 2 KiB that used to come back as 77 KiB (over TCP: a RangeError that killed the daemon)
  for (const from of [STRANGER, "127.0.0.2"]) {
    const udp = await askUdp(server, from, bomb);
    assert.ok(udp, "answered over UDP");
    assert.equal(rcodeOf(udp), 1, "FORMERR");
    assert.ok(udp.length <= bomb.length, `a ${bomb.length}-byte query got ${udp.length} bytes back: no amplification`);
    const tcp = await askTcp(server, from, bomb);
    assert.ok(tcp, "answered over TCP");
    assert.equal(rcodeOf(tcp), 1);
    assert.ok(tcp.length <= bomb.length);
  }
  const ok = await askTcp(server, "127.0.0.4", query("alpha.vm"));
  assert.deepEqual(
    dnsPacket.decode(ok!).answers?.map((a) => (a as { data?: unknown }).data),
    ["172.30.0.2"],
    "still serving",
  );
});

test("an upstream reply that re-encodes past 64 KiB reaches a TCP guest truncated, and the server keeps serving", async () => {
  // 4000 A records each naming the 200-byte question by a 2-byte pointer: 64 KiB on the wire
  // from the upstream, about 1 MiB once dns-packet writes every name out in full.
  upstreamReply = (q, transport) => {
    if (transport === "udp") return rawResponse(q, Buffer.alloc(0), 0, dnsPacket.TRUNCATED_RESPONSE);
    const rr = rawRecord(1, 60, Buffer.from([198, 51, 100, 1]));
    return rawResponse(q, Buffer.concat(Array.from({ length: 4000 }, () => rr)), 4000);
  };
  const { server } = await serve();
  const name = `${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.big.test`;
  const tcp = await askTcp(server, "127.0.0.2", query(name));
  assert.ok(tcp, "answered over TCP");
  const decoded = dnsPacket.decode(tcp);
  assert.ok(decoded.flag_tc, "cut, with TC");
  assert.ok((decoded.answers?.length ?? 0) > 100, `${decoded.answers?.length} records fit`);
  const udp = await askUdp(server, "127.0.0.2", query(name));
  assert.ok(udp && udp.length <= 512 && dnsPacket.decode(udp).flag_tc, "UDP: 512 bytes at most, with TC");
  assert.equal(rcodeOf((await askTcp(server, "127.0.0.4", query("alpha.vm")))!), 0, "still serving");
});

/** Heap in use after a full collection (gc exposed the documented way for a running process). */
function heapAfterGc(): number {
  v8.setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test("the cache's 4 MiB is memory: records of many tiny pieces are counted by what they hold, not their wire bytes", async () => {
  // One TXT record of 20,000 empty strings: 20 KB on the wire, about 2 MB of JS objects once
  // decoded. Counted by wire bytes, 24 of them passed for 0.5 MB of a 4 MiB cache.
  upstreamReply = (q, transport) => {
    if (transport === "udp") return rawResponse(q, Buffer.alloc(0), 0, dnsPacket.TRUNCATED_RESPONSE);
    return rawResponse(q, rawRecord(16, 300, Buffer.alloc(20_000)), 1);
  };
  const forwarder = new Forwarder({ upstreams: () => [{ host: "127.0.0.1", port: upstream.port }] });
  const before = heapAfterGc();
  for (let i = 0; i < 24; i++) {
    const r = await forwarder.resolve({ name: `t${i}.txt.test`, type: "TXT" }, "127.0.0.2");
    assert.equal(r.answers.length, 1);
  }
  const grown = heapAfterGc() - before;
  assert.ok(forwarder.cacheSize.bytes <= forwarder.limits.cacheBytes);
  assert.ok(grown < 12 * 1024 * 1024, `the cache grew the heap by ${(grown / 1048576).toFixed(1)} MiB`);
  assert.ok(forwarder.cacheSize.bytes >= grown / 2, `it counts ${forwarder.cacheSize.bytes} bytes for ${grown} bytes of heap`);
});

test("one client holding every TCP connection it can does not lock other guests out of TCP", async () => {
  const { server } = await serve();
  const held = await Promise.all(
    Array.from(
      { length: 70 },
      () =>
        new Promise<import("node:net").Socket>((resolve) => {
          const c = connect({ port: server.port, host: "127.0.0.1", localAddress: "127.0.0.2" }, () => resolve(c));
          c.on("error", () => resolve(c));
        }),
    ),
  );
  try {
    await new Promise((r) => setTimeout(r, 200)); // let the server take (or turn away) them all
    const open = held.filter((c) => !c.destroyed && c.readyState === "open").length;
    const reply = await askTcp(server, "127.0.0.4", query("alpha.vm"));
    assert.ok(reply, `another guest is answered over TCP while the first holds ${open} connections`);
    assert.equal(rcodeOf(reply), 0);
  } finally {
    for (const c of held) c.destroy();
  }
});

/** Bytes of a valid query with some of them overwritten, or plain noise. */
const hostileQuery = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  fc
    .tuple(
      fc.constantFrom("example.test", "alpha.vm", "a.b.c.d.test", "x"),
      fc.constantFrom("A", "AAAA", "TXT", "ANY", "MX", "OPT", "AXFR"),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 8 }),
    )
    .map(([name, type, edits]) => {
      const q = Buffer.from(query(name, type));
      for (const [at, byte] of edits) q[at % q.length] = byte;
      return q;
    }),
);

test("fuzz: no query a guest or stranger sends, over UDP or TCP, takes the server down", async () => {
  upstreamReply = (q) => rawResponse(q, rawRecord(1, 60, Buffer.from([198, 51, 100, 3])), 1);
  const { server } = await serve({ timeoutMs: 300, attemptMs: 300 });
  await fc.assert(
    fc.asyncProperty(hostileQuery, fc.constantFrom("127.0.0.2", "127.0.0.4", STRANGER), fc.boolean(), async (msg, from, tcp) => {
      const reply = tcp ? await askTcp(server, from, msg, 1000) : await askUdp(server, from, msg, 250);
      if (reply && reply.length >= 2 && msg.length >= 2) assert.equal(reply.readUInt16BE(0), msg.readUInt16BE(0), "a reply carries the query's id");
      if (reply && !tcp) assert.ok(reply.length <= 512, "UDP replies fit in 512 bytes");
    }),
    { numRuns: 100 },
  );
  assert.equal(rcodeOf((await askUdp(server, "127.0.0.4", query("alpha.vm")))!), 0, "still serving");
});

/** Record types dns-packet decodes into structures (and a few it keeps as bytes). */
const RR_TYPES = [1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 35, 39, 41, 43, 46, 47, 48, 50, 52, 99, 257, 65280];
const owner = fc.constantFrom("q.fuzz.test", "alpha.vm", "other.test", "x", "vm");
const text = fc.string({ maxLength: 30 });
/** A record dns-packet writes itself (any owner, `.vm` ones included), as wire bytes. */
const wellFormed = fc
  .tuple(
    owner,
    fc.nat(),
    fc.oneof(
      fc.ipV4().map((data) => ({ type: "A", data })),
      fc.ipV6().map((data) => ({ type: "AAAA", data })),
      owner.map((data) => ({ type: "CNAME", data })),
      owner.map((data) => ({ type: "NS", data })),
      fc.array(text, { maxLength: 4 }).map((data) => ({ type: "TXT", data })),
      fc.tuple(fc.nat({ max: 65535 }), owner).map(([preference, exchange]) => ({ type: "MX", data: { preference, exchange } })),
      fc.tuple(fc.nat({ max: 65535 }), owner).map(([port, target]) => ({ type: "SRV", data: { port, target, priority: 1, weight: 1 } })),
      fc.tuple(owner, fc.nat()).map(([mname, minimum]) => ({ type: "SOA", data: { mname, rname: "r.test", serial: 1, refresh: 1, retry: 1, expire: 1, minimum } })),
      text.map((value) => ({ type: "CAA", data: { flags: 0, tag: "issue", value } })),
    ),
  )
  .map(([name, ttl, rec]) => Buffer.from(dnsPacket.encode({ type: "response", answers: [{ name, ttl, ...rec } as never] }).subarray(12)));
/** A record of any type with random rdata, owned by the question through a pointer. */
const randomRdata = fc.tuple(fc.constantFrom(...RR_TYPES), fc.nat(), fc.uint8Array({ maxLength: 80 })).map(([type, ttl, rdata]) => rawRecord(type, ttl, Buffer.from(rdata)));
const hostileRecord = fc.oneof({ arbitrary: wellFormed, weight: 4 }, { arbitrary: randomRdata, weight: 1 });
const hostileReply = fc.record({
  rcode: fc.constantFrom(0, 0, 0, 3, 2, 5),
  tc: fc.boolean(),
  records: fc.oneof({ arbitrary: fc.array(wellFormed, { maxLength: 12 }), weight: 3 }, { arbitrary: fc.array(hostileRecord, { maxLength: 12 }), weight: 1 }),
  // Section counts: usually the records' own split, sometimes lies.
  counts: fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, fc.tuple(fc.nat({ max: 14 }), fc.nat({ max: 6 }), fc.nat({ max: 6 }))),
  split: fc.tuple(fc.nat(), fc.nat()),
  noise: fc.oneof({ arbitrary: fc.constant(new Uint8Array()), weight: 5 }, { arbitrary: fc.uint8Array({ maxLength: 40 }), weight: 1 }),
});

test("fuzz: no reply an upstream sends (records of every shape, wrong counts, noise) crashes the server; the guest gets an answer or SERVFAIL", async () => {
  let current: typeof hostileReply extends fc.Arbitrary<infer T> ? T | undefined : never;
  upstreamReply = (q, transport) => {
    if (!current) return undefined;
    const n = current.records.length;
    const ns = n === 0 ? 0 : current.split[0] % (n + 1);
    const ar = n - ns === 0 ? 0 : current.split[1] % (n - ns + 1);
    const [an, nsCount, arCount] = current.counts ?? [n - ns - ar, ns, ar];
    const body = Buffer.concat([...current.records, Buffer.from(current.noise)]);
    const out = rawResponse(q, body, an, current.rcode | (current.tc && transport === "udp" ? dnsPacket.TRUNCATED_RESPONSE : 0));
    out.writeUInt16BE(nsCount, 8);
    out.writeUInt16BE(arCount, 10);
    return out;
  };
  const { server } = await serve({ timeoutMs: 200, attemptMs: 200 });
  let n = 0;
  const answered: Record<number, number> = {};
  await fc.assert(
    fc.asyncProperty(hostileReply, fc.boolean(), async (r, tcp) => {
      current = r;
      const id = ++n;
      const msg = query(`q${id}.fuzz.test`, "A", id);
      for (const round of [1, 2]) {
        // the second from the cache when the first was cached
        const reply = tcp ? await askTcp(server, "127.0.0.2", msg, 2000) : await askUdp(server, "127.0.0.2", msg, 2000);
        assert.ok(reply, `round ${round}: a reply`);
        assert.equal(reply.readUInt16BE(0), id);
        const decoded = dnsPacket.decode(reply);
        assert.ok([0, 2, 3].includes(rcodeOf(reply)), `rcode ${rcodeOf(reply)}`);
        if (!tcp) assert.ok(reply.length <= 512);
        assert.deepEqual(
          decoded.questions?.map((q) => q.name),
          [`q${id}.fuzz.test`],
        );
        answered[rcodeOf(reply)] = (answered[rcodeOf(reply)] ?? 0) + 1;
      }
    }),
    { numRuns: 100 },
  );
  current = undefined;
  assert.ok((answered[0] ?? 0) + (answered[3] ?? 0) > 40, `most hostile replies decoded and went through the cache and encoder (${JSON.stringify(answered)})`);
  assert.equal(rcodeOf((await askUdp(server, "127.0.0.4", query("alpha.vm")))!), 0, "still serving");
});

test("a name that only folds to another outside ASCII (the Kelvin sign K) does not answer for it from the cache", async () => {
  // DNS folds case for ASCII letters only; JavaScript's toLowerCase() also folds U+212A to
  // "k". The upstream, rightly, has no such name: its NXDOMAIN must not become
  // "kernel.test"'s answer for every guest.
  upstreamReply = (q) => {
    const name = q.questions![0]!.name;
    if (/^[\x00-\x7f]*$/.test(name)) return rawResponse(q, rawRecord(1, 300, Buffer.from([198, 51, 100, 5])), 1);
    return rawResponse(q, Buffer.alloc(0), 0, 3);
  };
  const { server } = await serve();
  const kelvin = await askUdp(server, "127.0.0.2", query("\u212Aernel.test"));
  assert.equal(rcodeOf(kelvin!), 3, "the Kelvin name does not exist");
  const realBytes = (await askUdp(server, "127.0.0.2", query("kernel.test")))!;
  assert.equal(rcodeOf(realBytes), 0, "kernel.test still resolves for the next guest");
  const real = dnsPacket.decode(realBytes);
  assert.deepEqual(
    real.answers?.map((a) => (a as { data?: unknown }).data),
    ["198.51.100.5"],
  );
  const upper = dnsPacket.decode((await askUdp(server, "127.0.0.2", query("KERNEL.test")))!);
  assert.deepEqual(
    upper.answers?.map((a) => (a as { data?: unknown }).data),
    ["198.51.100.5"],
    "ASCII case still shares the entry",
  );
});

test("a forwarded answer keeps only the question's CNAME chain, and no record of a .vm name in any section", async () => {
  const records = (answers: object[]) => Buffer.from(dnsPacket.encode({ type: "response", answers: answers as never }).subarray(12));
  upstreamReply = (q) => {
    const name = q.questions![0]!.name;
    const answers = records([
      { name, type: "CNAME", ttl: 60, data: "mid.test" },
      { name: "other.test", type: "A", ttl: 60, data: "203.0.113.66" }, // nobody asked
      { name: "mid.test", type: "CNAME", ttl: 60, data: "alpha.vm" }, // kept: it names the guest's own .vm
      { name: "alpha.vm", type: "A", ttl: 60, data: "203.0.113.66" }, // never: .vm is the daemon's
      { name: "MID.test", type: "A", ttl: 60, data: "198.51.100.4" },
    ]);
    const authorities = records([
      { name: "vm", type: "NS", ttl: 60, data: "ns.evil.test" },
      { name: "test", type: "NS", ttl: 60, data: "ns.test" },
    ]);
    const out = rawResponse(q, Buffer.concat([answers, authorities]), 5);
    out.writeUInt16BE(2, 8);
    return out;
  };
  const { server } = await serve();
  const reply = dnsPacket.decode((await askTcp(server, "127.0.0.2", query("Evil.test")))!);
  const show = (rs: unknown[] | undefined) =>
    (rs ?? []).map((r) => {
      const a = r as { name: string; type: string; data: unknown };
      return `${a.name} ${a.type} ${String(a.data)}`;
    });
  assert.deepEqual(show(reply.answers), ["Evil.test CNAME mid.test", "mid.test CNAME alpha.vm", "MID.test A 198.51.100.4"]);
  assert.deepEqual(show(reply.authorities), ["test NS ns.test"]);
});
