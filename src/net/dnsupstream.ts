// The forwarder's view of the host's resolvers: which upstreams to ask (the config's list,
// else the `nameserver` lines of /etc/resolv.conf, re-read when it changes), and one
// exchange with one of them. Every exchange is a query of banger's own (a fresh random id
// and source port, the guest's question only, never its packet), over UDP from a connected
// socket (so only the upstream's address is heard and an ICMP "port unreachable" fails at
// once), retried over TCP when the reply is truncated. Replies whose id or question do not
// match are ignored, and each exchange ends at its deadline.
import { createSocket } from "node:dgram";
import { randomInt } from "node:crypto";
import { statSync, readFileSync } from "node:fs";
import { connect, isIP } from "node:net";
import dnsPacket from "dns-packet";
import type { Packet, Question } from "dns-packet";
import { invalidArgument } from "../util/errors.ts";

export interface Upstream {
  host: string;
  port: number;
}

export const RESOLV_CONF = "/etc/resolv.conf";
/** What we tell upstreams we can take over UDP (the DNS flag day 2020 size). */
const EDNS_UDP_SIZE = 1232;
const MAX_TCP_MESSAGE = 65535;

/** "1.1.1.1", "1.1.1.1:5353", "::1", "[::1]:5353" → an upstream (port 53 unless named). */
export function parseUpstream(text: string): Upstream {
  const t = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  const v4port = /^([\d.]+):(\d+)$/.exec(t);
  const [host, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : v4port ? [v4port[1]!, v4port[2]] : [t, undefined];
  const port = portText === undefined ? 53 : Number(portText);
  if (isIP(host) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArgument(`DNS upstream ${JSON.stringify(text)} is not an address`, "use IP or IP:PORT, e.g. 1.1.1.1 or 127.0.0.1:5353 or [::1]:53");
  }
  return { host, port };
}

export function formatUpstream(u: Upstream): string {
  const host = isIP(u.host) === 6 ? `[${u.host}]` : u.host;
  return u.port === 53 ? u.host : `${host}:${u.port}`;
}

/** The `nameserver` addresses of a resolv.conf text (a scoped link-local one keeps its %interface). */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!) !== 0) out.push({ host: m[1]!, port: 53 });
  }
  return out;
}

/**
 * The host's resolvers from `path`, re-read when its mtime changes (checked at most once a
 * second): laptops switch networks and NetworkManager rewrites the file. Loopback stubs
 * (systemd-resolved's 127.0.0.53) are kept: the daemon runs on the host, where they answer;
 * where one does not (a daemon in another network namespace), the forwarder skips it.
 */
export function resolvConfUpstreams(path = RESOLV_CONF): () => Upstream[] {
  let mtime = -1;
  let checked = 0;
  let current: Upstream[] = [];
  return () => {
    if (Date.now() - checked < 1000) return current;
    checked = Date.now();
    try {
      const m = statSync(path).mtimeMs;
      if (m !== mtime) {
        current = parseResolvConf(readFileSync(path, "utf8").slice(0, 64 * 1024));
        mtime = m;
      }
    } catch {
      current = [];
      mtime = -1;
    }
    return current;
  };
}

/** The header and sections of an upstream's reply, checked against what we asked. */
export type UpstreamReply = Packet & { rcode?: string; flag_tc?: boolean };

/** Failures worth trying the next upstream for; `down` ones also make it wait its turn a while. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly down: boolean,
  ) {
    super(message);
  }
}

/**
 * A name as DNS compares it: ASCII letters folded, nothing else (toLowerCase() would also
 * fold the Kelvin sign U+212A to "k", making two different names one cache entry).
 */
export const dnsName = (name: string) => name.replace(/[A-Z]+/g, (s) => s.toLowerCase()).replace(/\.$/, "");

/** The guests' own domain: names under it are answered by the daemon and never forwarded. */
export const VM_DOMAIN = "vm";

export function inVmDomain(name: string): boolean {
  const n = dnsName(name);
  return n === VM_DOMAIN || n.endsWith(`.${VM_DOMAIN}`);
}

/** Whether `reply` answers query `id` for question `q` (same id, one question, same name, type and class). */
export function replyMatches(reply: Packet, id: number, q: Question): boolean {
  const rq = reply.questions;
  return reply.type === "response" && reply.id === id && rq?.length === 1 && dnsName(rq[0]!.name) === dnsName(q.name) && rq[0]!.type === q.type && (rq[0]!.class ?? "IN") === (q.class ?? "IN");
}

function buildQuery(q: Question): { id: number; message: Buffer } {
  const id = randomInt(0, 65536);
  const message = dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: q.type, class: q.class ?? "IN" }],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: EDNS_UDP_SIZE } as never],
  });
  return { id, message };
}

/** Asks one upstream one question: UDP, then TCP if the UDP reply was truncated. */
export async function exchange(up: Upstream, q: Question, timeoutMs: number): Promise<UpstreamReply> {
  const deadline = Date.now() + timeoutMs;
  const udp = await exchangeUdp(up, q, timeoutMs);
  if (udp !== "truncated") return udp;
  return exchangeTcp(up, q, Math.max(1, deadline - Date.now()));
}

function decodeMatching(msg: Buffer, id: number, q: Question): UpstreamReply | undefined {
  try {
    const reply = dnsPacket.decode(msg) as UpstreamReply;
    return replyMatches(reply, id, q) ? reply : undefined;
  } catch {
    return undefined;
  }
}

function exchangeUdp(up: Upstream, q: Question, timeoutMs: number): Promise<UpstreamReply | "truncated"> {
  const { id, message } = buildQuery(q);
  const sock = createSocket(isIP(up.host) === 6 ? "udp6" : "udp4");
  return new Promise<UpstreamReply | "truncated">((resolve, reject) => {
    let open = true;
    const finish = (err: Error | undefined, reply?: UpstreamReply | "truncated") => {
      if (!open) return;
      open = false;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new UpstreamError(`${formatUpstream(up)}: no reply in ${timeoutMs} ms`, true)), timeoutMs);
    // ECONNREFUSED: nothing listens there (a loopback stub seen from another network namespace).
    sock.on("error", (err: NodeJS.ErrnoException) => finish(new UpstreamError(`${formatUpstream(up)}: ${err.code ?? err.message}`, true)));
    sock.on("message", (msg) => {
      const reply = decodeMatching(msg, id, q);
      if (reply) finish(undefined, reply.flag_tc ? "truncated" : reply); // else not ours: keep waiting
    });
    sock.connect(up.port, up.host, () => {
      if (open) sock.send(message);
    });
  });
}

function exchangeTcp(up: Upstream, q: Question, timeoutMs: number): Promise<UpstreamReply> {
  const { id, message } = buildQuery(q);
  return new Promise((resolve, reject) => {
    const conn = connect(up.port, up.host);
    let buf = Buffer.alloc(0);
    const fail = (why: string) => {
      clearTimeout(timer);
      conn.destroy();
      reject(new UpstreamError(`${formatUpstream(up)} over TCP: ${why}`, true));
    };
    const timer = setTimeout(() => fail(`no reply in ${timeoutMs} ms`), timeoutMs);
    conn.on("close", () => {
      clearTimeout(timer);
      reject(new UpstreamError(`${formatUpstream(up)} over TCP: closed without a reply`, true));
    });
    conn.on("error", (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    conn.on("connect", () => {
      const framed = Buffer.alloc(2 + message.length);
      framed.writeUInt16BE(message.length, 0);
      message.copy(framed, 2);
      conn.write(framed);
    });
    conn.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > 2 + MAX_TCP_MESSAGE) return fail("reply too long");
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const reply = decodeMatching(buf.subarray(2, 2 + buf.readUInt16BE(0)), id, q);
      clearTimeout(timer);
      conn.destroy();
      if (reply) resolve(reply);
      else reject(new UpstreamError(`${formatUpstream(up)} over TCP: a reply that does not match the query`, false));
    });
  });
}
