// The guests' DNS server forwarding names outside `.vm`: a real server on loopback, a real
// upstream of the test's own (test/kits/dns.ts) on another loopback port, queried by the real
// dig from chosen source addresses (127.0.0.x stand for guests).
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { run } from "../util/exec.ts";
import { Forwarder, parseResolvConf, parseUpstream, resolvConfUpstreams, startDnsServer, type DnsAccess, type DnsServer, type ForwarderLimits, type Upstream } from "./index.ts";
import { FakeUpstream, serveGuests } from "../../test/kits/dns.ts";

const ZONE = {
  "example.test": { A: ["198.51.100.7"], AAAA: ["2001:db8::7"], ttl: 120 },
  "long.test": { A: ["198.51.100.8"], ttl: 86_400 },
  "zero.test": { A: ["198.51.100.9"], ttl: 0 },
  // More addresses than fit in 512 bytes: UDP answers are cut (TC), TCP has them all.
  "many.test": { A: Array.from({ length: 60 }, (_, i) => `198.51.100.${i + 10}`), ttl: 60 },
};
/** Source addresses of the "guests": full, public, none, and one that is no VM. */
const GUESTS: Record<string, DnsAccess> = { "127.0.0.2": "forward", "127.0.0.3": "forward", "127.0.0.4": "local" };
const STRANGER = "127.0.0.9";

let upstream: FakeUpstream;
const servers: DnsServer[] = [];

before(async () => {
  upstream = await new FakeUpstream("127.0.0.1", ZONE).start();
});
after(async () => {
  for (const s of servers) await s.close();
  await upstream.close();
});
beforeEach(() => {
  upstream.behaviour = "answer";
  upstream.delayMs = 0;
  upstream.questions.length = 0;
});

async function serve(limits: Partial<ForwarderLimits> = {}, upstreams: Upstream[] = [{ host: "127.0.0.1", port: upstream.port }], now?: () => number) {
  const served = await serveGuests({ guests: GUESTS, upstreams: () => upstreams, limits, now });
  servers.push(served.server);
  return served;
}

interface Dig {
  status: string;
  answers: string[];
  ttls: number[];
  flags: string;
}

async function dig(server: DnsServer, from: string, name: string, type = "A", ...extra: string[]): Promise<Dig> {
  const res = await run(["dig", "@127.0.0.1", "-p", String(server.port), "-b", from, name, type, "+time=5", "+tries=1", ...extra]);
  const status = /status: (\w+)/.exec(res.stdout)?.[1] ?? `no reply: ${res.stdout}`;
  const flags = /;; flags: ([^;]*);/.exec(res.stdout)?.[1] ?? "";
  const records = res.stdout
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith(";"))
    .map((l) => l.split(/\s+/));
  return { status, flags, answers: records.map((r) => r.slice(3).join(" ")), ttls: records.map((r) => Number(r[1])) };
}

test("a guest allowed out gets other names from the upstream, over UDP and TCP; .vm stays local", async () => {
  const { server } = await serve();
  const a = await dig(server, "127.0.0.2", "example.test");
  assert.equal(a.status, "NOERROR");
  assert.deepEqual(a.answers, ["A 198.51.100.7"]);
  assert.match(a.flags, /\bra\b/, "recursion available for this guest");
  assert.deepEqual((await dig(server, "127.0.0.3", "Example.TEST", "AAAA", "+tcp")).answers, ["AAAA 2001:db8::7"]);
  assert.equal((await dig(server, "127.0.0.2", "nosuch.test")).status, "NXDOMAIN");
  assert.deepEqual((await dig(server, "127.0.0.2", "alpha.vm")).answers, ["A 172.30.0.2"]);
  assert.ok(!upstream.questions.some((q) => q.name.endsWith(".vm")), "`.vm` names never leave");
});

test("answers are cached: the upstream is asked once, and the cached TTL counts down", async () => {
  let clock = 1_000_000;
  const { server, forwarder } = await serve({}, undefined, () => clock);
  const first = await dig(server, "127.0.0.2", "example.test");
  clock += 30_000;
  const second = await dig(server, "127.0.0.3", "example.test");
  assert.deepEqual(second.answers, first.answers);
  assert.equal(upstream.questions.length, 1, "one upstream question for two guests' queries");
  assert.equal(forwarder.upstreamQueries, 1);
  assert.equal(first.ttls[0], 120);
  assert.equal(second.ttls[0], 90);
  clock += 91_000; // past its TTL: asked again
  await dig(server, "127.0.0.2", "example.test");
  assert.equal(upstream.questions.length, 2);
  await dig(server, "127.0.0.2", "zero.test");
  await dig(server, "127.0.0.2", "zero.test");
  assert.equal(upstream.questions.filter((q) => q.name === "zero.test").length, 2, "TTL 0 is not cached");
});

test("TTLs are clamped, for answers and for NXDOMAIN", async () => {
  const { server } = await serve({ maxTtl: 45, maxNegativeTtl: 7 });
  assert.deepEqual((await dig(server, "127.0.0.2", "long.test")).ttls, [45], "86400 s from upstream, at most 45 s to the guest");
  const nx = await dig(server, "127.0.0.2", "nosuch.test");
  assert.equal(nx.status, "NXDOMAIN");
  assert.deepEqual(nx.ttls, [7], "the SOA's 600 s clamped");
});

test("a silent upstream is a SERVFAIL at the deadline; an unreachable one is skipped", async () => {
  upstream.behaviour = "silent";
  const { server } = await serve({ timeoutMs: 600, attemptMs: 600 });
  const t0 = Date.now();
  assert.equal((await dig(server, "127.0.0.2", "example.test")).status, "SERVFAIL");
  const took = Date.now() - t0;
  assert.ok(took >= 550 && took < 2000, `SERVFAIL after ${took} ms`);

  // A loopback stub that does not exist here (nothing on that port) before the real upstream:
  // refused at once (ICMP), so the answer comes from the second without waiting.
  upstream.behaviour = "answer";
  const dead = createSocket("udp4");
  await new Promise<void>((r) => dead.bind(0, "127.0.0.1", () => r()));
  const deadPort = dead.address().port;
  dead.close();
  const both = await serve({ timeoutMs: 3000, attemptMs: 2000 }, [
    { host: "127.0.0.1", port: deadPort },
    { host: "127.0.0.1", port: upstream.port },
  ]);
  const t1 = Date.now();
  assert.deepEqual((await dig(both.server, "127.0.0.2", "example.test")).answers, ["A 198.51.100.7"]);
  assert.ok(Date.now() - t1 < 1000, "the unreachable upstream did not cost a timeout");
});

test("queries from an address that is no guest are refused, whatever the name; a `none` guest gets `.vm` only", async () => {
  const { server } = await serve();
  assert.equal((await dig(server, STRANGER, "example.test")).status, "REFUSED");
  assert.equal((await dig(server, STRANGER, "alpha.vm")).status, "REFUSED");
  assert.equal((await dig(server, STRANGER, "example.test", "A", "+tcp")).status, "REFUSED");
  const none = await dig(server, "127.0.0.4", "example.test");
  assert.equal(none.status, "REFUSED");
  assert.doesNotMatch(none.flags, /\bra\b/);
  assert.deepEqual((await dig(server, "127.0.0.4", "alpha.vm")).answers, ["A 172.30.0.2"]);
  const off = await serve({}, []); // no resolver in resolv.conf, or dns.upstream = []
  assert.equal((await dig(off.server, "127.0.0.2", "example.test")).status, "REFUSED");
  assert.equal(upstream.questions.length, 0, "nothing was forwarded");
});

test("a store that fails while telling who asks is a SERVFAIL, and the server keeps answering", async () => {
  let broken = true;
  const server = await startDnsServer({
    host: "127.0.0.1",
    port: 0,
    lookup: () => ({ ipv4: ["172.30.0.2"] }),
    access: () => {
      if (broken) throw new Error("store gone");
      return "local";
    },
  });
  servers.push(server);
  assert.equal((await dig(server, "127.0.0.2", "alpha.vm")).status, "SERVFAIL");
  assert.equal((await dig(server, "127.0.0.2", "alpha.vm", "A", "+tcp")).status, "SERVFAIL");
  broken = false;
  assert.deepEqual((await dig(server, "127.0.0.2", "alpha.vm")).answers, ["A 172.30.0.2"]);
});

test("replies with the wrong id or question are ignored; only spoofs is a SERVFAIL", async () => {
  upstream.behaviour = "spoof-first";
  const { server } = await serve({ timeoutMs: 800, attemptMs: 800 });
  assert.deepEqual((await dig(server, "127.0.0.2", "example.test")).answers, ["A 198.51.100.7"], "the real reply after three spoofs");
  upstream.behaviour = "spoof-only";
  const spoofed = await dig(server, "127.0.0.2", "long.test");
  assert.equal(spoofed.status, "SERVFAIL");
  assert.deepEqual(spoofed.answers, []);
});

test("the upstream's query is banger's own: a fresh id, the question only", async () => {
  const { server } = await serve();
  for (const name of ["example.test", "long.test"]) {
    const res = await run(["dig", "@127.0.0.1", "-p", String(server.port), "-b", "127.0.0.2", name, "+qid=4242", "+nsid", "+time=5", "+tries=1"]);
    assert.match(res.stdout, /id: 4242/, "the guest gets its own id back");
  }
  assert.equal(upstream.questions.length, 2);
  assert.ok(
    upstream.questions.some((q) => q.id !== 4242),
    "the upstream sees ids of banger's choosing",
  );
  assert.deepEqual(
    upstream.questions.map((q) => q.ednsOptions),
    [0, 0],
    "the guest's EDNS options (NSID) are not passed on",
  );
});

test("a truncated UDP upstream reply is retried over TCP; a guest on UDP gets what fits, with TC", async () => {
  upstream.behaviour = "truncate-udp";
  const { server } = await serve();
  const udp = await dig(server, "127.0.0.2", "many.test", "A", "+ignore");
  assert.match(udp.flags, /\btc\b/);
  assert.ok(udp.answers.length > 5 && udp.answers.length < 60, `${udp.answers.length} answers fit in 512 bytes`);
  assert.deepEqual(
    upstream.questions.map((q) => q.transport),
    ["udp", "tcp"],
  );
  const tcp = await dig(server, "127.0.0.2", "many.test", "A", "+tcp");
  assert.equal(tcp.answers.length, 60, "the whole answer over TCP, from the cache");
  assert.equal(upstream.questions.length, 2);
});

/** Sends one A query per name at once from `from` over UDP; each reply's rcode and how long it took. */
async function burst(server: DnsServer, from: string, n: number): Promise<{ rcode: number; ms: number }[]> {
  const sock = createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, from, () => r()));
  const sent = new Map<number, number>();
  const got: { rcode: number; ms: number }[] = [];
  const done = new Promise<void>((resolve) => {
    sock.on("message", (msg) => {
      const id = msg.readUInt16BE(0);
      got.push({ rcode: msg.readUInt16BE(2) & 0xf, ms: Date.now() - sent.get(id)! });
      if (got.length === n) resolve();
    });
  });
  for (let i = 0; i < n; i++) {
    sent.set(i + 1, Date.now());
    sock.send(dnsPacket.encode({ type: "query", id: i + 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: `n${i}.${from}.test` }] }), server.port, "127.0.0.1");
  }
  await done;
  sock.close();
  return got;
}

test("bounds: questions waiting per guest and in all; one upstream question for the same name at once", async () => {
  upstream.behaviour = "silent";
  const { server, forwarder } = await serve({ inflightPerClient: 3, inflightTotal: 5, timeoutMs: 1500, attemptMs: 1500 });
  const [a, b] = await Promise.all([burst(server, "127.0.0.2", 6), burst(server, "127.0.0.3", 6)]);
  for (const d of [...a, ...b]) assert.equal(d.rcode, 2, "SERVFAIL");
  const waited = (ds: { ms: number }[]) => ds.filter((d) => d.ms >= 1000).length;
  assert.equal(waited(a) + waited(b), 5, "5 questions waited on the upstream; the others were turned away at once");
  assert.ok(waited(a) <= 3 && waited(b) <= 3, `at most 3 per guest (${waited(a)}, ${waited(b)})`);
  assert.equal(upstream.questions.length, 5);

  upstream.behaviour = "answer";
  upstream.delayMs = 300;
  upstream.questions.length = 0;
  const same = await Promise.all([dig(server, "127.0.0.2", "example.test"), dig(server, "127.0.0.3", "example.test")]);
  assert.deepEqual(
    same.map((d) => d.answers),
    [["A 198.51.100.7"], ["A 198.51.100.7"]],
  );
  assert.equal(upstream.questions.length, 1, "two guests asking at once: one upstream question");
  assert.ok(forwarder.upstreamQueries >= 1);
});

test("the cache is capped in entries and bytes", async () => {
  const zone = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`h${i}.test`, { A: ["198.51.100.1"], ttl: 300 }]));
  const many = await new FakeUpstream("127.0.0.1", zone).start();
  try {
    const ups = () => [{ host: "127.0.0.1", port: many.port }];
    const byCount = new Forwarder({ upstreams: ups, limits: { cacheEntries: 8 } });
    for (let i = 0; i < 40; i++) await byCount.resolve({ name: `h${i}.test`, type: "A" }, "127.0.0.2");
    assert.equal(byCount.cacheSize.entries, 8);
    await byCount.resolve({ name: "h39.test", type: "A" }, "127.0.0.2");
    assert.equal(byCount.upstreamQueries, 40, "the newest entry is still cached");
    await byCount.resolve({ name: "h0.test", type: "A" }, "127.0.0.2");
    assert.equal(byCount.upstreamQueries, 41, "the oldest was dropped");

    const byBytes = new Forwarder({ upstreams: ups, limits: { cacheBytes: 1500 } }); // about 4 entries of one A record
    for (let i = 0; i < 40; i++) await byBytes.resolve({ name: `h${i}.test`, type: "A" }, "127.0.0.2");
    assert.ok(byBytes.cacheSize.bytes <= 1500, `${byBytes.cacheSize.bytes} bytes cached`);
    assert.ok(byBytes.cacheSize.entries >= 3, "it still caches what fits");
  } finally {
    await many.close();
  }
});

test("upstreams: parsed from resolv.conf (re-read when it changes) and from IP[:PORT] text", async () => {
  assert.deepEqual(parseResolvConf("# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch lan\n nameserver 2001:db8::53\noptions edns0\n"), [
    { host: "127.0.0.53", port: 53 },
    { host: "fe80::1%eth0", port: 53 },
    { host: "2001:db8::53", port: 53 },
  ]);
  assert.deepEqual(parseUpstream("192.0.2.1"), { host: "192.0.2.1", port: 53 });
  assert.deepEqual(parseUpstream("127.0.0.1:5353"), { host: "127.0.0.1", port: 5353 });
  assert.deepEqual(parseUpstream("[::1]:5300"), { host: "::1", port: 5300 });
  assert.deepEqual(parseUpstream("2001:db8::1"), { host: "2001:db8::1", port: 53 });
  for (const bad of ["", "dns.google", "1.2.3.4:0", "1.2.3.4:99999", "[::1]:x"]) assert.throws(() => parseUpstream(bad), /is not an address/);

  const dir = mkdtempSync(join(tmpdir(), "banger-resolv-"));
  try {
    const file = join(dir, "resolv.conf");
    writeFileSync(file, "nameserver 192.0.2.1\n");
    const current = resolvConfUpstreams(file);
    assert.deepEqual(current(), [{ host: "192.0.2.1", port: 53 }]);
    writeFileSync(file, "nameserver 192.0.2.2\n");
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(current(), [{ host: "192.0.2.2", port: 53 }]);
    rmSync(file);
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual(current(), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
