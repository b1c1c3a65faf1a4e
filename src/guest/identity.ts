// The `reidentify` operation's request (agent/PROTOCOL.md, "Identity"): what makes a restored
// or forked guest a new machine (hostname, RNG seed, clock, and with networking MAC and
// address). Checked here, before anything is sent, with the rules the agent applies again.
import { isIPv4, isIP } from "node:net";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { isValidName } from "../util/names.ts";
import type { AgentInfo } from "./messages.ts";

export interface ReidentifyParams {
  /** The VM's name (the VM name rule: what boot passes as banger.hostname). */
  hostname: string;
  /** Fresh random bytes (64 is what callers use; 32 to 512 accepted) reseeding the guest's kernel RNG. */
  seed: Buffer;
  /** The host's wall clock, ms since the epoch. */
  timeUnixMs: number;
  /** The NIC's new identity on the bridge; absent: networking left as it is. */
  net?: { mac: string; ip: string; prefixLength: number; gateway: string; dns?: string };
}

const MIN_SEED = 32;
const MAX_SEED = 512;
// A clock outside these years is broken: the agent refuses it too.
const MIN_TIME_MS = Date.UTC(2000, 0, 1);
const MAX_TIME_MS = Date.UTC(2100, 0, 1);
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const MAX_DNS = 3; // resolv.conf's MAXNS

/** Fails with one clear line when the agent predates the operation (feature "reidentify"). */
export function requireReidentify(info: AgentInfo): void {
  if (info.features.includes("reidentify")) return;
  throw new BangerError(
    ErrorCode.Unavailable,
    `this VM's agent (${info.agentVersion}) is too old to be restored or forked: it cannot take a new identity`,
    "rebuild the image (or boot it with this banger's kernel initramfs) and take the snapshot again",
  );
}

/** The OPEN params of `reidentify`, after checking every field. */
export function reidentifyRequest(p: ReidentifyParams): Record<string, unknown> {
  if (typeof p.hostname !== "string" || !isValidName(p.hostname)) {
    throw invalidArgument(`bad hostname ${JSON.stringify(String(p.hostname).slice(0, 80))}: use the VM name rule (letters, digits, '.', '_', '-'; at most 64)`);
  }
  if (!Buffer.isBuffer(p.seed) || p.seed.length < MIN_SEED || p.seed.length > MAX_SEED) {
    throw invalidArgument(`the RNG seed must be ${MIN_SEED} to ${MAX_SEED} random bytes`);
  }
  if (!Number.isSafeInteger(p.timeUnixMs) || p.timeUnixMs < MIN_TIME_MS || p.timeUnixMs > MAX_TIME_MS) {
    throw invalidArgument(`the host clock (${p.timeUnixMs} ms) is not between the years 2000 and 2100`);
  }
  const req: Record<string, unknown> = { hostname: p.hostname, seed: p.seed.toString("base64"), time_unix_ms: p.timeUnixMs };
  if (p.net) req.net = netRequest(p.net);
  return req;
}

function netRequest(n: NonNullable<ReidentifyParams["net"]>): Record<string, unknown> {
  if (typeof n.mac !== "string" || !MAC.test(n.mac) || (Number.parseInt(n.mac.slice(0, 2), 16) & 1) !== 0 || /^(00:){5}00$/.test(n.mac)) {
    throw invalidArgument(`bad guest MAC ${JSON.stringify(n.mac)}: want a unicast aa:bb:cc:dd:ee:ff`);
  }
  if (!Number.isInteger(n.prefixLength) || n.prefixLength < 1 || n.prefixLength > 30) {
    throw invalidArgument(`bad guest prefix length ${n.prefixLength}: want 1 to 30`);
  }
  if (!isIPv4(n.ip)) throw invalidArgument(`bad guest address ${JSON.stringify(n.ip)}: want IPv4`);
  const mask = (0xffffffff << (32 - n.prefixLength)) >>> 0;
  const ip = ipv4Number(n.ip);
  const host = (ip & ~mask) >>> 0;
  if (host === 0 || host === ~mask >>> 0) throw invalidArgument(`guest address ${n.ip} is the network or broadcast address of its /${n.prefixLength}`);
  if (!isIPv4(n.gateway) || n.gateway === n.ip || (ipv4Number(n.gateway) & mask) >>> 0 !== (ip & mask) >>> 0) {
    throw invalidArgument(`bad gateway ${JSON.stringify(n.gateway)}: want an IPv4 address in ${n.ip}/${n.prefixLength} other than the guest's`);
  }
  const req: Record<string, unknown> = { mac: n.mac.toLowerCase(), ip: n.ip, prefix_length: n.prefixLength, gateway: n.gateway };
  if (n.dns !== undefined && n.dns !== "") {
    const servers = n.dns.split(",");
    if (servers.length > MAX_DNS || servers.some((s) => isIP(s) === 0)) throw invalidArgument(`bad DNS servers ${JSON.stringify(n.dns)}: at most ${MAX_DNS} IP addresses, comma-separated`);
    req.dns = n.dns;
  }
  return req;
}

function ipv4Number(s: string): number {
  return s.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}
