// NAT, egress policy and guest isolation in nftables tables of banger's own
// (`inet banger` and `bridge banger`). The whole ruleset is rendered from state (bridge,
// subnet, every VM's policy) and swapped in one atomic `nft -f -` transaction, so applying
// it at daemon start, after each VM change, or twice in a row always gives the same result.
//
// Policies, per VM (keyed by its bridge port and address; the bridge table drops frames
// whose source address is not the one assigned to that port, so a guest cannot borrow
// another VM's policy):
//   full   — routed anywhere (masqueraded), every host service.
//   public — routed only to public addresses: private, shared, loopback, link-local (cloud
//            metadata 169.254.169.254), multicast and reserved ranges are dropped; of the
//            host only DNS (53) and ping on the gateway address.
//   none   — nothing routed; of the host only DNS and ping on the gateway address.
// The guests' DNS on the gateway takes packets from the bridge and the host only: it tells
// guests apart by source address, which a machine on another link could forge.
// Every policy: nothing unsolicited comes in from outside, no IPv6 (guests are IPv4-only),
// and guests reach each other only when both have `peer` set. Guest-to-guest traffic is the
// bridge table's job: frames between ports are dropped unless both are peers, and packets
// the host would route from one guest back into the bridge for another are dropped on the
// way out. The inet forward chain lets bridge-to-bridge packets pass because, with
// br_netfilter loaded (Docker hosts, and this kernel), bridged IPv4 shows up there too.
import { invalidArgument } from "../util/errors.ts";
import { validateIfname } from "./bridge.ts";
import { ipJson, netRun, netRunChecked, setSysctl, type NetTarget } from "./exec.ts";
import { formatSubnet, gatewayOf, parseIpv4, subnetContains, type Subnet } from "./subnet.ts";

export type EgressPolicy = "full" | "none" | "public";
export const EGRESS_POLICIES: readonly EgressPolicy[] = ["full", "none", "public"];

export interface VmNetRule {
  /** The VM's address on the bridge. */
  ip: string;
  /** The VM's bridge port (its tap). */
  port: string;
  egress: EgressPolicy;
  /** Reach (and be reached by) other VMs that also have peer set. */
  peer?: boolean;
}

export interface NatSpec {
  bridge: string;
  subnet: Subnet;
  /** Interface to masquerade out of; default: the default route's, else any but the bridge. */
  outIface?: string;
  vms: readonly VmNetRule[];
}

export const TABLE_NAME = "banger";

/** Addresses a `public` VM may not reach: everything that is not the public internet. */
export const NON_PUBLIC_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3"] as const;

export function parseEgressPolicy(text: string): EgressPolicy {
  if ((EGRESS_POLICIES as readonly string[]).includes(text)) return text as EgressPolicy;
  throw invalidArgument(`unknown network policy ${JSON.stringify(text)}`, `use one of: ${EGRESS_POLICIES.join(", ")}`);
}

function validateRule(spec: NatSpec, vm: VmNetRule): void {
  validateIfname(vm.port, "VM port");
  parseIpv4(vm.ip);
  if (!subnetContains(spec.subnet, vm.ip) || vm.ip === gatewayOf(spec.subnet)) {
    throw invalidArgument(`VM address ${vm.ip} is not a guest address of ${formatSubnet(spec.subnet)}`);
  }
  parseEgressPolicy(vm.egress);
}

const q = (ifname: string) => `"${ifname}"`;

function setDecl(name: string, type: string, elements: string[], flags?: string): string {
  const lines = [`  set ${name} {`, `    type ${type};`];
  if (flags) lines.push(`    flags ${flags};`);
  if (elements.length > 0) lines.push(`    elements = { ${elements.join(", ")} }`);
  lines.push("  }");
  return lines.join("\n");
}

/** The nft script that replaces both banger tables with the state in `spec`. */
export function renderRuleset(spec: NatSpec, outIface: string | undefined): string {
  validateIfname(spec.bridge, "bridge name");
  if (outIface !== undefined) validateIfname(outIface, "uplink interface");
  for (const vm of spec.vms) validateRule(spec, vm);
  const br = q(spec.bridge);
  const net = formatSubnet(spec.subnet);
  const gw = gatewayOf(spec.subnet);
  const ips = (p: EgressPolicy) => spec.vms.filter((v) => v.egress === p).map((v) => v.ip);
  const uplink = outIface ? `oifname ${q(outIface)}` : `oifname != ${br}`;
  return `${resetTables()}
table inet ${TABLE_NAME} {
${setDecl("egress_full", "ipv4_addr", ips("full"))}
${setDecl("egress_public", "ipv4_addr", ips("public"))}
${setDecl("non_public", "ipv4_addr", [...NON_PUBLIC_V4], "interval")}
  chain input {
    type filter hook input priority filter; policy accept;
    iifname != { ${br}, "lo" } ip daddr ${gw} meta l4proto { tcp, udp } th dport 53 drop
    iifname ${br} ip saddr @egress_full accept
    iifname ${br} jump guest_to_host_limited
  }
  chain guest_to_host_limited {
    ct state established,related accept
    ip daddr ${gw} udp dport 53 accept
    ip daddr ${gw} tcp dport 53 accept
    ip daddr ${gw} icmp type echo-request accept
    drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname ${br} oifname ${br} accept
    oifname ${br} ct state established,related accept
    oifname ${br} drop
    iifname ${br} jump from_guests
  }
  chain from_guests {
    meta nfproto ipv6 drop
    ip saddr != ${net} drop
    ip saddr @egress_full accept
    ip saddr @egress_public ip daddr @non_public drop
    ip saddr @egress_public accept
    drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${net} ${uplink} masquerade
  }
}
table bridge ${TABLE_NAME} {
${setDecl(
  "ports",
  "ifname",
  spec.vms.map((v) => q(v.port)),
)}
${setDecl(
  "port_addrs",
  "ifname . ipv4_addr",
  spec.vms.map((v) => `${q(v.port)} . ${v.ip}`),
)}
${setDecl(
  "peers",
  "ifname",
  spec.vms.filter((v) => v.peer).map((v) => q(v.port)),
)}
  chain prerouting {
    type filter hook prerouting priority -200; policy accept;
    iifname != @ports accept
    ether type ip iifname . ip saddr != @port_addrs drop
    ether type arp iifname . arp saddr ip != @port_addrs drop
    ether type ip6 drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname @peers oifname @peers accept
    iifname @ports drop
    oifname @ports drop
  }
  chain output {
    type filter hook output priority filter; policy accept;
    ether type ip oifname @ports ip saddr ${net} ip saddr != ${gw} drop
  }
}
`;
}

/** Deletes both tables inside the same transaction; `add` first so a missing table is fine. */
function resetTables(): string {
  return [`add table inet ${TABLE_NAME}`, `delete table inet ${TABLE_NAME}`, `add table bridge ${TABLE_NAME}`, `delete table bridge ${TABLE_NAME}`].join("\n");
}

/** The interface of the default IPv4 route, if there is one. */
export async function defaultRouteInterface(target: NetTarget): Promise<string | undefined> {
  const routes = await ipJson<{ dev?: string }>(target, ["-4", "route", "show", "default"]);
  return routes.find((r) => r.dev)?.dev;
}

/** Turns on IPv4 forwarding (left on at teardown: other software may rely on it too). */
export async function enableForwarding(target: NetTarget): Promise<void> {
  await setSysctl(target, "net.ipv4.ip_forward", "1");
}

/** Enables forwarding and atomically installs banger's tables for `spec`. Idempotent. */
export async function applyNat(target: NetTarget, spec: NatSpec): Promise<void> {
  const outIface = spec.outIface ?? (await defaultRouteInterface(target));
  const script = renderRuleset(spec, outIface);
  await enableForwarding(target);
  await netRunChecked(target, ["nft", "-f", "-"], script);
}

/** Removes banger's nftables tables; absent tables are fine. */
export async function teardownNat(target: NetTarget): Promise<void> {
  await netRunChecked(target, ["nft", "-f", "-"], `${resetTables()}\n`);
}

/** Names of banger's tables present now ("inet banger", "bridge banger"). */
export async function listNatTables(target: NetTarget): Promise<string[]> {
  const res = await netRun(target, ["nft", "list", "tables"]);
  return res.stdout
    .split("\n")
    .map((l) => l.replace(/^table\s+/, "").trim())
    .filter((t) => t.endsWith(` ${TABLE_NAME}`));
}
