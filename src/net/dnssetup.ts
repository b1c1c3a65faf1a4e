// `banger dns setup`: make the host resolve `*.vm` through banger's DNS server. With
// systemd-resolved the bridge link gets the server and a routing-only `~vm` domain (and is
// never a default route, so other names never reach banger's REFUSED answers). Without it,
// the user gets the text saying what to configure. Link settings vanish with the link, so
// the daemon runs this again after creating the bridge.
import { which } from "../util/exec.ts";
import { netRun, netRunChecked, type NetTarget } from "./exec.ts";
import { validateIfname } from "./bridge.ts";
import { parseIpv4 } from "./subnet.ts";
import { VM_DOMAIN } from "./dns.ts";

export interface DnsSetupFacts {
  bridge: string;
  gateway: string;
  /** resolvectl is installed and systemd-resolved answers it. */
  resolved: boolean;
}

export type DnsSetupPlan = { kind: "resolved"; commands: string[][]; text: string } | { kind: "manual"; text: string };

/** What to do for these facts: resolvectl commands to run, or instructions for the user. */
export function planDnsSetup(facts: DnsSetupFacts): DnsSetupPlan {
  validateIfname(facts.bridge, "bridge name");
  parseIpv4(facts.gateway);
  const { bridge, gateway } = facts;
  if (facts.resolved) {
    return {
      kind: "resolved",
      commands: [
        ["resolvectl", "dns", bridge, gateway],
        ["resolvectl", "domain", bridge, `~${VM_DOMAIN}`],
        ["resolvectl", "default-route", bridge, "false"],
      ],
      text: `systemd-resolved now sends *.${VM_DOMAIN} queries to ${gateway} on ${bridge}`,
    };
  }
  return {
    kind: "manual",
    text: [
      `systemd-resolved is not running here, so banger cannot route *.${VM_DOMAIN} names by itself.`,
      `banger's DNS server answers <vm-name>.${VM_DOMAIN} on ${gateway} port 53. Point your resolver at it for the "${VM_DOMAIN}" domain only, e.g.:`,
      `  dnsmasq / NetworkManager (dns=dnsmasq):  server=/${VM_DOMAIN}/${gateway}`,
      `  unbound:  forward-zone: name: "${VM_DOMAIN}."  forward-addr: ${gateway}`,
      `Or query it directly: dig @${gateway} <vm-name>.${VM_DOMAIN}`,
    ].join("\n"),
  };
}

/** Whether systemd-resolved is usable: resolvectl on PATH and `resolvectl status` succeeds. */
export async function detectResolved(target: NetTarget = {}): Promise<boolean> {
  if (!which("resolvectl")) return false;
  const res = await netRun(target, ["resolvectl", "status"]).catch(() => undefined);
  return res?.code === 0;
}

/** Detects, plans and (with systemd-resolved) applies; returns the plan that was followed. */
export async function setupDns(target: NetTarget, bridge: string, gateway: string): Promise<DnsSetupPlan> {
  const plan = planDnsSetup({ bridge, gateway, resolved: await detectResolved(target) });
  if (plan.kind === "resolved") for (const argv of plan.commands) await netRunChecked(target, argv);
  return plan;
}
