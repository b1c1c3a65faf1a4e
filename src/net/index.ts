// Package net owns the host side of VM networking: the bridge subnet choice and guest
// address allocation, the bridge itself, a pool of pre-created taps, NAT plus per-VM egress
// policy and guest isolation in nftables tables of banger's own, the guests' DNS server
// (`.vm` names, other names forwarded to the host's resolvers for guests allowed out),
// `banger dns setup` through systemd-resolved, the SSH include file and key, and the
// guest's network parameters (kernel command line, MAC).
//
// It does not own persistence (the daemon stores the chosen subnet, each VM's address, tap
// and policy, and passes them back in), the VM lifecycle (the daemon calls acquire/release
// and re-applies the rules on create/stop/rm), or the guest side (the agent reads the
// kernel parameters). Every host command runs through a NetTarget, whose argv prefix aims
// the whole module at a network namespace (tests never configure the host's).
export { inNetns } from "./exec.ts";
export type { NetTarget } from "./exec.ts";
export {
  allocateAddress,
  chooseSubnet,
  formatSubnet,
  gatewayOf,
  listRoutes,
  parseSubnet,
  subnetContains,
} from "./subnet.ts";
export type { ChooseSubnetOptions, RouteEntry, Subnet } from "./subnet.ts";
export { DEFAULT_BRIDGE, bridgeMac, ensureBridge, getLink, listLinks, teardownBridge, validateIfname } from "./bridge.ts";
export type { BridgeSpec, LinkInfo } from "./bridge.ts";
export { DEFAULT_TAP_PREFIX, TapPool, createTap, deleteTap, listTaps, sweepTaps } from "./tap.ts";
export type { TapPoolOptions } from "./tap.ts";
export {
  EGRESS_POLICIES,
  NON_PUBLIC_V4,
  TABLE_NAME,
  applyNat,
  defaultRouteInterface,
  enableForwarding,
  listNatTables,
  parseEgressPolicy,
  renderRuleset,
  teardownNat,
} from "./nat.ts";
export type { EgressPolicy, NatSpec, VmNetRule } from "./nat.ts";
export { setupHostNetwork, teardownHostNetwork } from "./network.ts";
export { VM_DOMAIN, answerQuery, startDnsServer } from "./dns.ts";
export type { ClientAccess, DnsAccess, DnsServer, DnsServerOptions, VmAddresses, VmLookup } from "./dns.ts";
export { FORWARDER_LIMITS, Forwarder } from "./dnsforward.ts";
export type { ForwarderLimits, ForwarderOptions } from "./dnsforward.ts";
export { RESOLV_CONF, formatUpstream, parseResolvConf, parseUpstream, resolvConfUpstreams } from "./dnsupstream.ts";
export type { Upstream } from "./dnsupstream.ts";
export { detectResolved, planDnsSetup, setupDns } from "./dnssetup.ts";
export type { DnsSetupFacts, DnsSetupPlan } from "./dnssetup.ts";
export { ensureSshKey, forgetKnownHost, renderSshConfig, sshIncludeLine, writeSshConfig } from "./ssh.ts";
export type { SshConfigOptions, SshKey } from "./ssh.ts";
export { guestKernelParams, macForVm } from "./guest.ts";
