// Test fixture: a small upstream resolver of the tests' own, over UDP and TCP, for names in
// a zone it is given (A/AAAA, one TTL; other names NXDOMAIN with an SOA). It records every
// question it gets, and can misbehave on demand: stay silent, send spoofed replies (wrong
// id, wrong question) before the real one, or truncate every UDP reply. Run as a script
// (`node --import tsx test/kits/dns.ts HOST ZONE_JSON`) it serves port 53 until killed, and
// prints "ready" then a line per question: the e2e's "internet" resolver in a namespace.
// RawUpstream is the hostile one: it answers each query with whatever bytes a test builds
// (compression tricks, record shapes dns-packet would never write, fuzz). serveGuests starts
// the guests' DNS server the unit tests talk to.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server } from "node:net";
import { pathToFileURL } from "node:url";
import dnsPacket from "dns-packet";
import type { Answer, Packet } from "dns-packet";
import { Forwarder, type ForwarderLimits, startDnsServer, type DnsAccess, type DnsServer, type Upstream } from "../../src/net/index.ts";

export type FakeZone = Record<string, { A?: string[]; AAAA?: string[]; ttl?: number }>;
export type FakeBehaviour = "answer" | "silent" | "spoof-first" | "spoof-only" | "truncate-udp";

export interface FakeQuestion {
  name: string;
  type: string;
  transport: "udp" | "tcp";
  id: number;
  /** EDNS options the query carried (a forwarder's own query carries none). */
  ednsOptions: number;
}

export class FakeUpstream {
  behaviour: FakeBehaviour = "answer";
  /** Delay before answering (ms): lets tests hold questions in flight. */
  delayMs = 0;
  readonly questions: FakeQuestion[] = [];
  onQuestion?: (q: FakeQuestion) => void;
  #udp!: UdpSocket;
  #tcp!: Server;
  port = 0;

  constructor(
    readonly host: string,
    readonly zone: FakeZone,
  ) {}

  async start(port = 0): Promise<this> {
    this.#udp = createSocket(this.host.includes(":") ? "udp6" : "udp4");
    await new Promise<void>((r, j) => {
      this.#udp.once("error", j);
      this.#udp.bind(port, this.host, () => r());
    });
    this.port = this.#udp.address().port;
    this.#udp.on("message", (msg, rinfo) => {
      for (const reply of this.#replies(msg, "udp")) this.#later(() => this.#udp.send(reply, rinfo.port, rinfo.address));
    });
    this.#tcp = createServer((conn) => {
      let buf = Buffer.alloc(0);
      conn.on("error", () => undefined);
      conn.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          for (const reply of this.#replies(msg, "tcp")) {
            const len = Buffer.alloc(2);
            len.writeUInt16BE(reply.length);
            this.#later(() => conn.write(Buffer.concat([len, reply])));
          }
        }
      });
    });
    await new Promise<void>((r) => this.#tcp.listen(this.port, this.host, () => r()));
    return this;
  }

  #later(fn: () => void): void {
    const safe = () => {
      try {
        fn();
      } catch {
        // closed meanwhile
      }
    };
    if (this.delayMs > 0) setTimeout(safe, this.delayMs);
    else safe();
  }

  #replies(msg: Buffer, transport: "udp" | "tcp"): Buffer[] {
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return [];
    }
    const q = query.questions?.[0];
    if (!q) return [];
    const opt = query.additionals?.find((a) => a.type === "OPT") as { options?: unknown[] } | undefined;
    const asked = { name: q.name, type: q.type, transport, id: query.id ?? 0, ednsOptions: opt?.options?.length ?? 0 };
    this.questions.push(asked);
    this.onQuestion?.(asked);
    if (this.behaviour === "silent") return [];
    const real = this.#answer(query);
    if (this.behaviour === "truncate-udp" && transport === "udp") {
      return [dnsPacket.encode({ ...real, answers: [], flags: (real.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE })];
    }
    if (this.behaviour === "spoof-first" || this.behaviour === "spoof-only") {
      const bogus: Answer[] = [{ type: "A", name: q.name, ttl: 3600, data: "203.0.113.66" }];
      const wrongId = dnsPacket.encode({ ...real, id: ((query.id ?? 0) + 1) & 0xffff, answers: bogus });
      const wrongName = dnsPacket.encode({ ...real, questions: [{ ...q, name: `x${q.name}` }], answers: bogus });
      const wrongType = dnsPacket.encode({ ...real, questions: [{ ...q, type: q.type === "A" ? "TXT" : "A" }], answers: bogus });
      const spoofs = [wrongId, wrongName, wrongType];
      return this.behaviour === "spoof-only" ? spoofs : [...spoofs, dnsPacket.encode(real)];
    }
    return [dnsPacket.encode(real)];
  }

  #answer(query: Packet): Packet {
    const q = query.questions![0]!;
    const entry = this.zone[q.name.toLowerCase().replace(/\.$/, "")];
    const base: Packet = { type: "response", id: query.id, questions: [q], flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE };
    if (!entry) {
      const soa: Answer = { type: "SOA", name: "test", ttl: 600, data: { mname: "ns.test", rname: "admin.test", serial: 1, refresh: 60, retry: 60, expire: 60, minimum: 600 } };
      return { ...base, flags: (base.flags ?? 0) | 3, authorities: [soa] };
    }
    const ttl = entry.ttl ?? 60;
    const answers: Answer[] = [];
    if (q.type === "A") for (const ip of entry.A ?? []) answers.push({ type: "A", name: q.name, ttl, data: ip });
    if (q.type === "AAAA") for (const ip of entry.AAAA ?? []) answers.push({ type: "AAAA", name: q.name, ttl, data: ip });
    return { ...base, answers };
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.#udp.close(() => r()));
    await new Promise<void>((r) => this.#tcp.close(() => r()));
  }
}

/** Builds the raw reply bytes to a query (undefined: stay silent). */
export type RawReply = (query: Packet, transport: "udp" | "tcp") => Buffer | undefined;

/** An upstream on `host` that answers UDP and TCP with bytes of the test's making. */
export class RawUpstream {
  #udp!: UdpSocket;
  #tcp!: Server;
  port = 0;

  constructor(
    readonly host: string,
    public reply: RawReply,
  ) {}

  async start(): Promise<this> {
    this.#udp = createSocket("udp4");
    await new Promise<void>((r) => this.#udp.bind(0, this.host, () => r()));
    this.port = this.#udp.address().port;
    this.#udp.on("message", (msg, rinfo) => {
      const out = this.#answer(msg, "udp");
      if (out) this.#udp.send(out, rinfo.port, rinfo.address);
    });
    this.#tcp = createServer((conn) => {
      let buf = Buffer.alloc(0);
      conn.on("error", () => undefined);
      conn.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        const out = this.#answer(buf.subarray(2, 2 + buf.readUInt16BE(0)), "tcp");
        if (!out) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        conn.end(Buffer.concat([len, out]));
      });
    });
    await new Promise<void>((r) => this.#tcp.listen(this.port, this.host, () => r()));
    return this;
  }

  #answer(msg: Buffer, transport: "udp" | "tcp"): Buffer | undefined {
    try {
      return this.reply(dnsPacket.decode(msg), transport);
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.#udp.close(() => r()));
    await new Promise<void>((r) => this.#tcp.close(() => r()));
  }
}

/**
 * The wire bytes of a response to `query` (its id and question, QR and RA set, `flags` added)
 * followed by `records` raw resource records and an ANCOUNT of `count`. The question starts
 * at offset 12, so a record may name it with the compression pointer 0xc00c.
 */
export function rawResponse(query: Packet, records: Buffer, count: number, flags = 0): Buffer {
  const head = dnsPacket.encode({ type: "response", id: query.id, questions: query.questions, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | flags });
  head.writeUInt16BE(count, 6);
  return Buffer.concat([head, records]);
}

/** One raw record owned by the question's name (pointer 0xc00c): type, class IN, `ttl`, rdata. */
export function rawRecord(type: number, ttl: number, rdata: Buffer): Buffer {
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(type, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(ttl, 6);
  rr.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([rr, rdata]);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [host, zoneJson] = process.argv.slice(2);
  const upstream = await new FakeUpstream(host!, JSON.parse(zoneJson ?? "{}") as FakeZone).start(53);
  upstream.onQuestion = (q) => console.log(`question ${q.name} ${q.type} ${q.transport}`);
  console.log("ready");
}

/**
 * The guests' DNS server on 127.0.0.1 as the unit tests see it: `alpha.vm` is 172.30.0.2,
 * `guests` says who may ask what, names outside `.vm` go to `upstreams`.
 */
export async function serveGuests(opts: {
  guests: Record<string, DnsAccess>;
  upstreams: () => Upstream[];
  limits?: Partial<ForwarderLimits>;
  now?: () => number;
}): Promise<{ server: DnsServer; forwarder: Forwarder }> {
  const forwarder = new Forwarder({ upstreams: opts.upstreams, limits: opts.limits ?? {}, ...(opts.now ? { now: opts.now } : {}) });
  const server = await startDnsServer({
    host: "127.0.0.1",
    port: 0,
    forwarder,
    lookup: (name) => (name === "alpha" ? { ipv4: ["172.30.0.2"] } : undefined),
    access: (addr) => opts.guests[addr],
  });
  return { server, forwarder };
}
