// The two calls the daemon makes around everything else: bring the host side up to the
// wanted state (bridge + forwarding + nftables for the current VMs), and take it all away.
import { ensureBridge, teardownBridge } from "./bridge.ts";
import type { NetTarget } from "./exec.ts";
import { applyNat, teardownNat, type NatSpec } from "./nat.ts";
import { DEFAULT_TAP_PREFIX, sweepTaps } from "./tap.ts";

/** Idempotent: ensures the bridge, then installs the nftables state for `spec.vms`. */
export async function setupHostNetwork(target: NetTarget, spec: NatSpec): Promise<void> {
  await ensureBridge(target, { name: spec.bridge, subnet: spec.subnet });
  await applyNat(target, spec);
}

/** Removes banger's nft tables, every prefixed tap and the bridge (`daemon stop --cleanup-network`). */
export async function teardownHostNetwork(target: NetTarget, opts: { bridge: string; tapPrefix?: string }): Promise<void> {
  await teardownNat(target);
  await sweepTaps(target, [], opts.tapPrefix ?? DEFAULT_TAP_PREFIX);
  await teardownBridge(target, opts.bridge);
}
