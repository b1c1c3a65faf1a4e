// The bridge every VM's tap joins, with the host's gateway address on it. ensureBridge
// converges to the wanted state (create, address, up) and is safe to call on every start.
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { ipJson, netRunChecked, setSysctl, type NetTarget } from "./exec.ts";
import { stableMac } from "./guest.ts";
import { gatewayOf, type Subnet } from "./subnet.ts";

export const DEFAULT_BRIDGE = "banger0";

/** Linux interface names: at most 15 bytes, no '/', whitespace or ':'. */
const IFNAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/;

export function validateIfname(name: string, what = "interface name"): string {
  if (!IFNAME.test(name)) throw invalidArgument(`invalid ${what} ${JSON.stringify(name)}`, "use up to 15 letters, digits, '.', '_' or '-'");
  return name;
}

export interface LinkInfo {
  ifname: string;
  address?: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** One link's details (kind, master, addresses), or undefined when it does not exist. */
export async function getLink(target: NetTarget, name: string): Promise<LinkInfo | undefined> {
  const links = await listLinks(target);
  return links.find((l) => l.ifname === name);
}

/** All links with their kind and addresses (`ip -d -j addr`), one process. */
export async function listLinks(target: NetTarget): Promise<LinkInfo[]> {
  return ipJson<LinkInfo>(target, ["-d", "addr", "show"]);
}

export interface BridgeSpec {
  name: string;
  subnet: Subnet;
}

/**
 * A fixed MAC for the bridge. Without one, Linux gives a bridge the lowest MAC of its ports,
 * so adding or deleting a tap can change the gateway's MAC under every running guest (whose
 * ARP entry then points nowhere until it expires).
 */
export function bridgeMac(name: string): string {
  return stableMac(`banger-bridge:${name}`);
}

/** Creates the bridge if missing, with a fixed MAC and exactly the gateway address, and brings it up. */
export async function ensureBridge(target: NetTarget, spec: BridgeSpec): Promise<void> {
  validateIfname(spec.name, "bridge name");
  let link = await getLink(target, spec.name);
  if (link && link.linkinfo?.info_kind !== "bridge") {
    throw new BangerError(ErrorCode.InUse, `interface ${spec.name} exists and is not a bridge`, "configure another bridge name for banger");
  }
  const mac = bridgeMac(spec.name);
  if (!link) {
    await netRunChecked(target, ["ip", "link", "add", spec.name, "address", mac, "type", "bridge"]);
    link = await getLink(target, spec.name);
  } else if (link.address !== mac) {
    await netRunChecked(target, ["ip", "link", "set", spec.name, "address", mac]);
  }
  // Guests are IPv4-only: without IPv6 on the bridge the host offers them no IPv6 path
  // (link-local services included) that the IPv4 egress policy would not see.
  await setSysctl(target, `net.ipv6.conf.${spec.name}.disable_ipv6`, "1");
  const want = `${gatewayOf(spec.subnet)}/${spec.subnet.prefix}`;
  const have = (link?.addr_info ?? []).filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`);
  for (const stale of have.filter((a) => a !== want)) {
    await netRunChecked(target, ["ip", "addr", "del", stale, "dev", spec.name]);
  }
  if (!have.includes(want)) await netRunChecked(target, ["ip", "addr", "add", want, "dev", spec.name]);
  await netRunChecked(target, ["ip", "link", "set", spec.name, "up"]);
}

/** Deletes the bridge (ports are detached, not deleted); a missing bridge is fine. */
export async function teardownBridge(target: NetTarget, name: string): Promise<void> {
  validateIfname(name, "bridge name");
  if (!(await getLink(target, name))) return;
  await netRunChecked(target, ["ip", "link", "del", name]);
}
