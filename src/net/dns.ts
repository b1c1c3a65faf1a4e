// The `.vm` DNS server: A/AAAA for `<vm-name>.vm` from a lookup the daemon gives, over UDP
// and TCP on the bridge gateway address. It is authoritative for `.vm` only and forwards
// nothing: any other name gets REFUSED, so a guest cannot use it as an open resolver and
// the host's own resolver keeps answering everything else. Queries come from guests, so
// they are untrusted: sizes are bounded, undecodable packets are dropped, nothing throws.
// Over TCP each connection holds at most a few KiB of replies (it stops reading while they
// wait), lives at most 60 s (10 s idle), and at most 64 connections are open.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIP, type Server, type Socket } from "node:net";
import dnsPacket from "dns-packet";
import type { Answer, Packet } from "dns-packet";
import { BangerError, ErrorCode } from "../util/errors.ts";

export interface VmAddresses {
  ipv4?: readonly string[];
  ipv6?: readonly string[];
}

/** Addresses of the VM with this (lowercased) name, or undefined when there is no such VM. */
export type VmLookup = (vmName: string) => VmAddresses | undefined;

export const VM_DOMAIN = "vm";
const UDP_LIMIT = 512;
/** Queries are a header and one question; anything bigger is not worth decoding. */
const MAX_QUERY = 4096;
const TCP_MAX_CONNECTIONS = 64;

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

/** The reply to one query message, or undefined when it should be dropped (garbage, responses). */
export function answerQuery(message: Buffer, lookup: VmLookup, ttl = 5): Buffer | undefined {
  let query: Packet;
  try {
    query = dnsPacket.decode(message);
  } catch {
    return undefined;
  }
  if (query.type !== "query" || typeof query.id !== "number") return undefined;
  const base: Packet = { type: "response", id: query.id, questions: query.questions ?? [] };
  const reply = (rcode: number, answers: Answer[] = [], aa = false): Buffer =>
    dnsPacket.encode({ ...base, answers, flags: (aa ? FLAG_AA : 0) | ((query.flags ?? 0) & FLAG_RD) | rcode });
  try {
    if (((query.flags ?? 0) >> 11) & 0xf) return reply(RCODE.NOTIMP);
    const q = query.questions?.[0];
    if (!q || query.questions!.length !== 1) return reply(RCODE.FORMERR);
    const name = q.name.toLowerCase().replace(/\.$/, "");
    if (q.class !== "IN" || !(name === VM_DOMAIN || name.endsWith(`.${VM_DOMAIN}`))) return reply(RCODE.REFUSED);
    const vm = name.slice(0, -(VM_DOMAIN.length + 1));
    const found = vm === "" ? undefined : lookup(vm);
    if (!found) return reply(RCODE.NXDOMAIN, [], true);
    const answers: Answer[] = [];
    const type: string = q.type; // "ANY" is missing from the package's type list
    if (type === "A" || type === "ANY") for (const ip of found.ipv4 ?? []) answers.push({ type: "A", name: q.name, ttl, data: checked(ip, 4) });
    if (type === "AAAA" || type === "ANY") for (const ip of found.ipv6 ?? []) answers.push({ type: "AAAA", name: q.name, ttl, data: checked(ip, 6) });
    return reply(RCODE.NOERROR, answers, true);
  } catch {
    // A lookup that throws or returns an unencodable address must not take the server down.
    return reply(RCODE.SERVFAIL);
  }
}

/** dns-packet encodes a malformed address without complaint; refuse to serve one. */
function checked(ip: string, family: 4 | 6): string {
  if (isIP(ip) !== family) throw new Error(`lookup returned a bad IPv${family} address`);
  return ip;
}

/** Over UDP a reply larger than 512 bytes is cut to its header with TC set (client retries on TCP). */
function fitUdp(reply: Buffer): Buffer {
  if (reply.length <= UDP_LIMIT) return reply;
  const header = Buffer.from(reply.subarray(0, 12));
  header.writeUInt16BE(header.readUInt16BE(2) | (1 << 9), 2);
  header.fill(0, 4, 12); // no sections
  return header;
}

export interface DnsServerOptions {
  /** Address to bind: the bridge gateway in production. */
  host: string;
  /** Default 53; 0 picks a free port (the same one for UDP and TCP). */
  port?: number;
  lookup: VmLookup;
  ttl?: number;
  /** TCP connection limits (tests shorten them). */
  tcp?: Partial<TcpLimits>;
}

export interface DnsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Serves `.vm` on UDP and TCP `host:port` until close(). */
export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const answer = (msg: Buffer) => answerQuery(msg, opts.lookup, opts.ttl);
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
  return new BangerError(ErrorCode.Unavailable, `cannot serve DNS on ${host}:${port}: ${code}`, "is the bridge up with its gateway address, and is another DNS server using port 53 there?", { cause: err });
}

function listenUdp(host: string, port: number, answer: (m: Buffer) => Buffer | undefined): Promise<UdpSocket> {
  const sock = createSocket({ type: "udp4", recvBufferSize: 64 * 1024 });
  return new Promise((resolve, reject) => {
    sock.once("error", (err) => reject(bindError(host, port, err)));
    sock.bind(port, host, () => {
      sock.removeAllListeners("error");
      sock.on("error", () => undefined); // per-datagram send errors: nothing to do
      sock.on("message", (msg, rinfo) => {
        const reply = msg.length <= MAX_QUERY ? answer(msg) : undefined;
        if (reply) sock.send(fitUdp(reply), rinfo.port, rinfo.address);
      });
      resolve(sock);
    });
  });
}

/** Open connections per server, so close() ends them instead of waiting on them. */
const connections = new WeakMap<Server, Set<Socket>>();

function listenTcp(host: string, port: number, answer: (m: Buffer) => Buffer | undefined, limits: TcpLimits): Promise<Server> {
  const open = new Set<Socket>();
  const server = createServer((conn) => {
    open.add(conn);
    conn.on("close", () => open.delete(conn));
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
 * on drain: per connection the server holds at most that plus one read of queries.
 */
function serveTcpConnection(conn: Socket, answer: (m: Buffer) => Buffer | undefined, limits: TcpLimits): void {
  let pending: Buffer = Buffer.alloc(0);
  conn.setTimeout(limits.idleMs, () => conn.destroy());
  const lifetime = setTimeout(() => conn.destroy(), limits.lifetimeMs);
  conn.on("close", () => clearTimeout(lifetime));
  conn.on("error", () => conn.destroy());
  const serve = (): void => {
    while (pending.length >= 2 && conn.writableLength <= limits.writeBound) {
      const len = pending.readUInt16BE(0);
      if (len > MAX_QUERY) return void conn.destroy();
      if (pending.length < 2 + len) break;
      const msg = pending.subarray(2, 2 + len);
      pending = pending.subarray(2 + len);
      const reply = answer(msg);
      if (!reply) return void conn.destroy();
      const framed = Buffer.alloc(2 + reply.length);
      framed.writeUInt16BE(reply.length, 0);
      reply.copy(framed, 2);
      conn.write(framed);
    }
    if (pending.length > MAX_PENDING) return void conn.destroy(); // unreachable while paused; a guard
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
    serve();
  });
}
