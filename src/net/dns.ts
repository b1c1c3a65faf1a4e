// The daemon's DNS server for guests, over UDP and TCP on the bridge gateway address. It
// answers A/AAAA for `<vm-name>.vm` from a lookup the daemon gives, and resolves every other
// name through the host's upstream resolvers (dnsforward.ts: cached, bounded, SERVFAIL
// after a deadline), but only for a guest whose egress policy reaches the internet. Who is
// asking is told by the source address (the bridge drops frames whose source is not the
// address of their port, so a guest cannot borrow another's): `access` maps it to
// "forward" (a `full` or `public` guest), "local" (`.vm` names only: the host itself, a
// `none` guest) or nothing (REFUSED, whatever the name). So it is never an open resolver,
// and the host's own resolver keeps answering the host. Queries come from guests, so they
// are untrusted: sizes are bounded, undecodable packets are dropped, nothing throws.
// Over TCP each connection holds at most a few KiB of replies (it stops reading while they
// wait, and while its one question waits on an upstream), lives at most 60 s (10 s idle),
// and at most 64 connections are open, 8 per source address.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIP, type Server, type Socket } from "node:net";
import dnsPacket from "dns-packet";
import type { Answer, Packet, Question } from "dns-packet";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { NoUpstreams, type Forwarder } from "./dnsforward.ts";
import { VM_DOMAIN, inVmDomain } from "./dnsupstream.ts";

export { VM_DOMAIN };

export interface VmAddresses {
  ipv4?: readonly string[];
  ipv6?: readonly string[];
}

/** Addresses of the VM with this (lowercased) name, or undefined when there is no such VM. */
export type VmLookup = (vmName: string) => VmAddresses | undefined;

const UDP_LIMIT = 512;
/** The largest message a TCP length prefix can carry. */
const TCP_LIMIT = 65535;
/** Queries are a header and one question; anything bigger is not worth decoding. */
const MAX_QUERY = 4096;
const TCP_MAX_CONNECTIONS = 64;
/** TCP connections one source address may hold. */
const TCP_PER_CLIENT = 8;

/** Per TCP connection: how long it may sit idle or live in all, and how many reply bytes may wait. */
export interface TcpLimits {
  idleMs: number;
  lifetimeMs: number;
  writeBound: number;
}
const TCP_LIMITS: TcpLimits = { idleMs: 10_000, lifetimeMs: 60_000, writeBound: 16 * 1024 };
/** Unanswered query bytes held per connection: one socket read (64 KiB) plus a partial query. */
const MAX_PENDING = 128 * 1024;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const FLAG_AA = 1 << 10;
const FLAG_RD = 1 << 8;
const FLAG_RA = 1 << 7;
const FLAG_TC = 1 << 9;
/** Question types that make no sense to forward from a guest (zone transfers, EDNS's pseudo-record). */
const NOT_FORWARDED = new Set(["AXFR", "IXFR", "OPT"]);

/**
 * What a client (by source address) may ask: "forward" = `.vm` and every other name,
 * "local" = `.vm` names only, undefined = nothing (REFUSED).
 */
export type DnsAccess = "forward" | "local";
export type ClientAccess = (address: string) => DnsAccess | undefined;

interface Context {
  lookup: VmLookup;
  ttl: number;
  access: ClientAccess;
  forwarder?: Forwarder | undefined;
}

/**
 * The reply to one query message from `client`, or undefined when it should be dropped
 * (garbage, responses). A promise only when the question went to the forwarder.
 */
function handleQuery(message: Buffer, client: string, ctx: Context): Packet | undefined | Promise<Packet> {
  let query: Packet;
  try {
    query = dnsPacket.decode(message);
  } catch {
    return undefined;
  }
  if (query.type !== "query" || typeof query.id !== "number") return undefined;
  // Echo the question only when there is exactly one that re-encodes as it came: names
  // decompress, so echoing hundreds of 2-byte pointers would send back 30 times the query
  // (to any source address, before access is known).
  const one = query.questions?.length === 1 && nameFits(query.questions[0]!.name);
  const base: Packet = { type: "response", id: query.id, questions: one ? query.questions : [] };
  const rd = (query.flags ?? 0) & FLAG_RD;
  const reply = (rcode: number, answers: Answer[] = [], aa = false): Packet => ({ ...base, answers, flags: (aa ? FLAG_AA : 0) | rd | rcode });
  if (((query.flags ?? 0) >> 11) & 0xf) return reply(RCODE.NOTIMP);
  const q = query.questions?.[0];
  if (!q || !one) return reply(RCODE.FORMERR);
  let access: DnsAccess | undefined;
  try {
    access = ctx.access(client);
  } catch {
    return reply(RCODE.SERVFAIL); // the store failing must not take the server down either
  }
  if (!access) return reply(RCODE.REFUSED);
  if (inVmDomain(q.name)) {
    const name = q.name.toLowerCase().replace(/\.$/, "");
    if (q.class !== "IN") return reply(RCODE.REFUSED);
    try {
      return answerVm(q, name, ctx, reply);
    } catch {
      // A lookup that throws or returns an unencodable address must not take the server down.
      return reply(RCODE.SERVFAIL);
    }
  }
  if (access !== "forward" || !ctx.forwarder || q.class !== "IN") return reply(RCODE.REFUSED);
  if (NOT_FORWARDED.has(q.type)) return reply(RCODE.NOTIMP);
  return ctx.forwarder.resolve({ name: q.name, type: q.type, class: "IN" }, client).then(
    (r) => ({ ...base, answers: r.answers, authorities: r.authorities, flags: rd | FLAG_RA | r.rcode }),
    (err: unknown) => ({ ...base, flags: rd | FLAG_RA | (err instanceof NoUpstreams ? RCODE.REFUSED : RCODE.SERVFAIL) }),
  );
}

function answerVm(q: Question, name: string, ctx: Context, reply: (rcode: number, answers?: Answer[], aa?: boolean) => Packet): Packet {
  const vm = name.slice(0, -(VM_DOMAIN.length + 1));
  const found = vm === "" ? undefined : ctx.lookup(vm);
  if (!found) return reply(RCODE.NXDOMAIN, [], true);
  const answers: Answer[] = [];
  const type: string = q.type; // "ANY" is missing from the package's type list
  const ttl = ctx.ttl;
  if (type === "A" || type === "ANY") for (const ip of found.ipv4 ?? []) answers.push({ type: "A", name: q.name, ttl, data: checked(ip, 4) });
  if (type === "AAAA" || type === "ANY") for (const ip of found.ipv6 ?? []) answers.push({ type: "AAAA", name: q.name, ttl, data: checked(ip, 6) });
  return reply(RCODE.NOERROR, answers, true);
}

/** Whether dns-packet writes `name` back as a valid name (a non-UTF-8 label grows threefold). */
function nameFits(name: string): boolean {
  const labels = name.replace(/^\.|\.$/g, "").split(".");
  return labels.every((l) => Buffer.byteLength(l) <= 63) && labels.reduce((n, l) => n + Buffer.byteLength(l) + 1, 1) <= 255;
}

/** dns-packet encodes a malformed address without complaint; refuse to serve one. */
function checked(ip: string, family: 4 | 6): string {
  if (isIP(ip) !== family) throw new Error(`lookup returned a bad IPv${family} address`);
  return ip;
}

/**
 * The reply's bytes. Over UDP (`limit` 512), one larger than 512 bytes loses its authority and
 * additional sections, then the answers that do not fit, with TC set: a client that retries
 * on TCP gets it all, and one that does not (musl before 1.2.4) still has the first answers.
 * Over TCP the same cut happens at 65535 bytes, the most a length prefix can say (an
 * upstream's compressed reply can re-encode far larger). A reply that cannot be encoded
 * becomes a SERVFAIL.
 */
function encodeReply(reply: Packet, limit: number): Buffer {
  let out: Buffer;
  try {
    out = dnsPacket.encode(reply);
  } catch {
    return dnsPacket.encode({ type: "response", id: reply.id, questions: reply.questions, flags: ((reply.flags ?? 0) & ~0xf) | RCODE.SERVFAIL });
  }
  if (out.length <= limit) return out;
  const slim: Packet = { ...reply, authorities: [], additionals: [] };
  let size = dnsPacket.encodingLength({ ...slim, answers: [] });
  const kept: Answer[] = [];
  for (const a of reply.answers ?? []) {
    size += dnsPacket.encodingLength({ answers: [a] }) - 12; // minus the header
    if (size > limit) break;
    kept.push(a);
  }
  const cut = kept.length < (reply.answers?.length ?? 0);
  return dnsPacket.encode({ ...slim, answers: kept, flags: (reply.flags ?? 0) | (cut ? FLAG_TC : 0) });
}

/** The `.vm` reply to one query message (everyone asking may ask `.vm`), or undefined when it should be dropped. */
export function answerQuery(message: Buffer, lookup: VmLookup, ttl = 5): Buffer | undefined {
  const reply = handleQuery(message, "", { lookup, ttl, access: () => "local" }) as Packet | undefined;
  return reply && encodeReply(reply, TCP_LIMIT);
}

export interface DnsServerOptions {
  /** Address to bind: the bridge gateway in production. */
  host: string;
  /** Default 53; 0 picks a free port (the same one for UDP and TCP). */
  port?: number;
  lookup: VmLookup;
  ttl?: number;
  /** Who may ask what, by source address. Default: everyone `.vm` only (nothing forwarded). */
  access?: ClientAccess;
  /** Resolves the names `access` lets through; without one, those are REFUSED. */
  forwarder?: Forwarder;
  /** TCP connection limits (tests shorten them). */
  tcp?: Partial<TcpLimits>;
}

export interface DnsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

type Answerer = (message: Buffer, client: string) => Packet | undefined | Promise<Packet>;

/** Serves DNS on UDP and TCP `host:port` until close(). */
export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const ctx: Context = { lookup: opts.lookup, ttl: opts.ttl ?? 5, access: opts.access ?? (() => "local"), forwarder: opts.forwarder };
  const answer: Answerer = (msg, client) => handleQuery(msg, client.replace(/^::ffff:/, ""), ctx);
  const udp = await listenUdp(opts.host, opts.port ?? 53, answer);
  const port = udp.address().port; // port 0 (tests): TCP takes the port UDP got
  let tcp: Server;
  try {
    tcp = await listenTcp(opts.host, port, answer, { ...TCP_LIMITS, ...opts.tcp });
  } catch (err) {
    udp.close();
    throw err;
  }
  return {
    host: opts.host,
    port,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      const closed = new Promise<void>((r) => tcp.close(() => r()));
      for (const conn of connections.get(tcp) ?? []) conn.destroy();
      await closed;
    },
  };
}

function bindError(host: string, port: number, err: unknown): BangerError {
  const code = (err as NodeJS.ErrnoException).code ?? "error";
  return new BangerError(ErrorCode.Unavailable, `cannot serve DNS on ${host}:${port}: ${code}`, "is the bridge up with its gateway address, and is another DNS server using port 53 there?", {
    cause: err,
  });
}

function listenUdp(host: string, port: number, answer: Answerer): Promise<UdpSocket> {
  const sock = createSocket({ type: "udp4", recvBufferSize: 64 * 1024 });
  return new Promise((resolve, reject) => {
    sock.once("error", (err) => reject(bindError(host, port, err)));
    sock.bind(port, host, () => {
      sock.removeAllListeners("error");
      sock.on("error", () => undefined); // per-datagram send errors: nothing to do
      sock.on("message", (msg, rinfo) => {
        const reply = msg.length <= MAX_QUERY ? answer(msg, rinfo.address) : undefined;
        const send = (r: Packet): void => {
          try {
            sock.send(encodeReply(r, UDP_LIMIT), rinfo.port, rinfo.address);
          } catch {
            // closed while an upstream was being asked
          }
        };
        if (reply instanceof Promise) void reply.then(send);
        else if (reply) send(reply);
      });
      resolve(sock);
    });
  });
}

/** Open connections per server, so close() ends them instead of waiting on them. */
const connections = new WeakMap<Server, Set<Socket>>();

function listenTcp(host: string, port: number, answer: Answerer, limits: TcpLimits): Promise<Server> {
  const open = new Set<Socket>();
  const perClient = new Map<string, number>();
  const server = createServer((conn) => {
    // One client (a guest, or any address that reaches the gateway) must not hold every slot.
    const who = conn.remoteAddress ?? "";
    const held = perClient.get(who) ?? 0;
    if (held >= TCP_PER_CLIENT) return void conn.destroy();
    perClient.set(who, held + 1);
    open.add(conn);
    conn.on("close", () => {
      open.delete(conn);
      const left = (perClient.get(who) ?? 1) - 1;
      if (left <= 0) perClient.delete(who);
      else perClient.set(who, left);
    });
    serveTcpConnection(conn, answer, limits);
  });
  connections.set(server, open);
  server.maxConnections = TCP_MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(bindError(host, port, err)));
    server.listen(port, host, () => {
      server.removeAllListeners("error");
      server.on("error", () => undefined);
      resolve(server);
    });
  });
}

/**
 * RFC 1035 TCP framing: each message is preceded by its 16-bit length. A client may pipeline
 * queries without reading the replies, so the connection stops reading (TCP pushes back on
 * the client) while more than TCP_WRITE_BOUND bytes of replies wait to be sent, and resumes
 * on drain; it also stops reading while a question waits on an upstream (one at a time, in
 * order): per connection the server holds at most that plus one read of queries.
 */
function serveTcpConnection(conn: Socket, answer: Answerer, limits: TcpLimits): void {
  let pending: Buffer = Buffer.alloc(0);
  let waiting = false;
  const client = conn.remoteAddress ?? "";
  conn.setTimeout(limits.idleMs, () => conn.destroy());
  const lifetime = setTimeout(() => conn.destroy(), limits.lifetimeMs);
  conn.on("close", () => clearTimeout(lifetime));
  conn.on("error", () => conn.destroy());
  const send = (reply: Packet): void => {
    const bytes = encodeReply(reply, TCP_LIMIT);
    const framed = Buffer.alloc(2 + bytes.length);
    framed.writeUInt16BE(bytes.length, 0);
    bytes.copy(framed, 2);
    conn.write(framed);
  };
  const serve = (): void => {
    if (waiting || conn.destroyed) return;
    while (pending.length >= 2 && conn.writableLength <= limits.writeBound) {
      const len = pending.readUInt16BE(0);
      if (len > MAX_QUERY) return void conn.destroy();
      if (pending.length < 2 + len) break;
      const msg = pending.subarray(2, 2 + len);
      pending = pending.subarray(2 + len);
      const reply = answer(msg, client);
      if (!reply) return void conn.destroy();
      if (reply instanceof Promise) {
        waiting = true;
        conn.pause();
        void reply.then((r) => {
          waiting = false;
          if (conn.destroyed) return;
          send(r);
          conn.resume();
          serve();
        });
        return;
      }
      send(reply);
    }
    if (conn.writableLength > limits.writeBound) {
      conn.pause();
      conn.once("drain", () => {
        conn.resume();
        serve();
      });
    }
  };
  conn.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    if (pending.length > MAX_PENDING) return void conn.destroy(); // unreachable while paused; a guard
    serve();
  });
}
