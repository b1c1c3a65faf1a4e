// The daemon's side of the guests' DNS (network.ts starts it with the bridge): which
// upstreams it forwards to (`BANGER_DNS_UPSTREAM`, else config `dns.upstream`, else the
// host's /etc/resolv.conf, re-read when it changes), and who may ask what, from the store:
// a running VM's address with `full` or `public` egress may resolve any name, one with
// `none` and the host itself only `.vm` names, any other address nothing.
import type { Config } from "../config/index.ts";
import { Forwarder, formatUpstream, parseUpstream, resolvConfUpstreams, startDnsServer, type DnsAccess, type DnsServer, type Upstream } from "../net/index.ts";
import type { Store } from "../store/index.ts";
import { invalidArgument } from "../util/errors.ts";

/**
 * Upstream resolvers the user chose: `BANGER_DNS_UPSTREAM=IP[:PORT],...` (tests, which must
 * not depend on the host's resolv.conf) wins over config `dns.upstream` (a list, or a
 * comma-separated string). Undefined: use the host's resolv.conf. An empty list turns
 * forwarding off.
 */
export function dnsUpstreamSetting(config: Config, env: NodeJS.ProcessEnv = process.env): Upstream[] | undefined {
  const fromEnv = env.BANGER_DNS_UPSTREAM;
  if (fromEnv !== undefined && fromEnv !== "") return splitList(fromEnv).map(parseUpstream);
  const dns = (config as { dns?: unknown }).dns;
  if (dns === undefined) return undefined;
  if (typeof dns !== "object" || dns === null || Array.isArray(dns)) throw invalidArgument('config: "dns" must be an object');
  const raw = (dns as { upstream?: unknown }).upstream;
  if (raw === undefined) return undefined;
  const list = typeof raw === "string" ? splitList(raw) : raw;
  if (!Array.isArray(list) || list.some((u) => typeof u !== "string")) throw invalidArgument('config: dns.upstream must be a list of addresses like ["1.1.1.1", "127.0.0.1:5353"]');
  return (list as string[]).map(parseUpstream);
}

const splitList = (text: string) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

export interface GuestDns {
  server: DnsServer;
  forwarder: Forwarder;
}

/** Serves DNS for the guests on `gateway`:53 (see the header for who may ask what). */
export async function startGuestDns(opts: { gateway: string; store: Store; upstreams: Upstream[] | undefined }): Promise<GuestDns> {
  const { gateway, store } = opts;
  const fromHost = opts.upstreams ? () => opts.upstreams! : resolvConfUpstreams();
  // Never forward to ourselves (a resolv.conf naming the gateway would loop through REFUSED).
  const upstreams = () => fromHost().filter((u) => !(u.host === gateway && u.port === 53));
  const forwarder = new Forwarder({ upstreams });
  const access = (address: string): DnsAccess | undefined => {
    if (address === gateway || address.startsWith("127.")) return "local";
    // Only a VM holding a tap: the bridge drops frames whose source is not its port's address.
    const vm = store.vmOnTap(address);
    if (!vm) return undefined;
    return vm.net === "none" ? "local" : "forward";
  };
  const lookup = (name: string) => {
    const vm = store.vmWithAddressNamed(name);
    return vm ? { ipv4: [vm.ip!] } : undefined;
  };
  const server = await startDnsServer({ host: gateway, port: 53, lookup, access, forwarder });
  return { server, forwarder };
}

/** The upstreams in use, for `net status`. */
export function describeUpstreams(dns: GuestDns | undefined): string[] {
  return dns ? dns.forwarder.upstreamList().map(formatUpstream) : [];
}
