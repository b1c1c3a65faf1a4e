// IPv4 arithmetic, the bridge subnet choice and guest address allocation. Pure functions
// except listRoutes; the daemon persists the chosen subnet and the used addresses.
import { invalidArgument, BangerError, ErrorCode } from "../util/errors.ts";
import { ipJson, type NetTarget } from "./exec.ts";

export interface Subnet {
  /** Network address, e.g. "172.30.0.0". */
  network: string;
  prefix: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIpv4(text: string): number {
  const m = IPV4.exec(text);
  const parts = m ? m.slice(1).map(Number) : [];
  if (!m || parts.some((p) => p > 255)) throw invalidArgument(`not an IPv4 address: ${JSON.stringify(text)}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "A.B.C.D/N"; the address must be the network address. Guest subnets are /16../29. */
export function parseSubnet(text: string): Subnet {
  const [addr, len, extra] = text.split("/");
  const prefix = Number(len);
  if (extra !== undefined || addr === undefined || !/^\d{1,2}$/.test(len ?? "") || prefix < 16 || prefix > 29) {
    throw invalidArgument(`invalid subnet ${JSON.stringify(text)}`, "use a network like 172.30.0.0/24 (prefix /16 to /29)");
  }
  const n = parseIpv4(addr);
  if ((n & mask(prefix)) >>> 0 !== n) {
    throw invalidArgument(`subnet ${text} has host bits set`, `did you mean ${formatIpv4((n & mask(prefix)) >>> 0)}/${prefix}?`);
  }
  return { network: addr, prefix };
}

export function formatSubnet(s: Subnet): string {
  return `${s.network}/${s.prefix}`;
}

export function subnetContains(s: Subnet, address: string): boolean {
  return (parseIpv4(address) & mask(s.prefix)) >>> 0 === parseIpv4(s.network);
}

function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (parseIpv4(a.network) & mask(p)) >>> 0 === (parseIpv4(b.network) & mask(p)) >>> 0;
}

/** The host's address on the bridge: the first address of the subnet (".1"). */
export function gatewayOf(s: Subnet): string {
  return formatIpv4(parseIpv4(s.network) + 1);
}

/** A free guest address (".2" upwards, never the gateway or broadcast) given the used ones. */
export function allocateAddress(s: Subnet, used: Iterable<string>): string {
  const taken = new Set<number>();
  for (const a of used) taken.add(parseIpv4(a));
  const base = parseIpv4(s.network);
  const last = base + 2 ** (32 - s.prefix) - 2; // broadcast excluded
  for (let n = base + 2; n <= last; n++) if (!taken.has(n)) return formatIpv4(n);
  throw new BangerError(ErrorCode.Unavailable, `no free guest address left in ${formatSubnet(s)}`, "remove stopped VMs (banger vm rm) or configure a larger subnet");
}

export interface RouteEntry {
  dst: string;
  dev?: string;
}

/** IPv4 routes of every table in the target namespace (what a new subnet must not overlap). */
export async function listRoutes(target: NetTarget): Promise<RouteEntry[]> {
  return ipJson<RouteEntry>(target, ["-4", "route", "show", "table", "all"]);
}

export interface ChooseSubnetOptions {
  /** Our bridge: routes through it are ours, and its subnet is kept when present. */
  bridge: string;
  prefix?: number;
  /** Where the scan starts, inside 172.16.0.0/12. Default 172.30.0.0 (away from Docker's 172.17+). */
  start?: string;
}

const POOL: Subnet = { network: "172.16.0.0", prefix: 12 };

/**
 * A /24 (by default) inside 172.16.0.0/12 that overlaps no existing route. When the bridge
 * already routes a subnet, that one is returned, so choosing again is stable. The caller
 * persists the result: guest addresses live inside it.
 */
export function chooseSubnet(routes: readonly RouteEntry[], opts: ChooseSubnetOptions): Subnet {
  const prefix = opts.prefix ?? 24;
  const routed: Subnet[] = [];
  for (const r of routes) {
    const s = routeSubnet(r.dst);
    if (!s) continue;
    if (r.dev === opts.bridge && s.prefix === prefix && overlaps(s, POOL)) return s;
    if (r.dev !== opts.bridge) routed.push(s);
  }
  const step = 2 ** (32 - prefix);
  const poolBase = parseIpv4(POOL.network);
  const count = 2 ** (prefix - POOL.prefix);
  const startIndex = Math.floor((parseIpv4(opts.start ?? "172.30.0.0") - poolBase) / step);
  for (let i = 0; i < count; i++) {
    const index = (((startIndex + i) % count) + count) % count;
    const candidate = { network: formatIpv4(poolBase + index * step), prefix };
    if (!routed.some((r) => overlaps(r, candidate))) return candidate;
  }
  throw new BangerError(ErrorCode.Unavailable, "no free subnet inside 172.16.0.0/12", "set a subnet for banger's bridge explicitly");
}

/** A route's destination as a subnet; the default route and non-IPv4 entries give undefined. */
function routeSubnet(dst: string): Subnet | undefined {
  if (dst === "default") return undefined;
  const [addr, len] = dst.split("/");
  if (!addr || !IPV4.test(addr)) return undefined;
  const prefix = len === undefined ? 32 : Number(len);
  return { network: formatIpv4((parseIpv4(addr) & mask(prefix)) >>> 0), prefix };
}
