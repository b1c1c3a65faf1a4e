// What a guest needs to configure its network: kernel command-line parameters read by the
// agent, and a stable MAC address per VM.
import { createHash } from "node:crypto";
import { invalidArgument } from "../util/errors.ts";
import { gatewayOf, parseIpv4, subnetContains, formatSubnet, type Subnet } from "./subnet.ts";

/** `banger.ip=ADDR/PREFIX banger.gw=GW banger.dns=GW`: the names the guest agent reads. */
export function guestKernelParams(address: string, subnet: Subnet): string[] {
  parseIpv4(address);
  const gw = gatewayOf(subnet);
  if (!subnetContains(subnet, address) || address === gw) throw invalidArgument(`guest address ${address} is not in ${formatSubnet(subnet)}`);
  return [`banger.ip=${address}/${subnet.prefix}`, `banger.gw=${gw}`, `banger.dns=${gw}`];
}

/** A locally administered unicast MAC derived from the VM id: same id, same MAC. */
export function macForVm(vmId: string): string {
  if (vmId === "") throw invalidArgument("VM id is required for a MAC address");
  return stableMac(`banger-mac:${vmId}`);
}

/** A locally administered unicast MAC derived from `seed` (sha256). */
export function stableMac(seed: string): string {
  const h = createHash("sha256").update(seed).digest();
  h[0] = (h[0]! & 0xfc) | 0x02; // locally administered, unicast
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}
