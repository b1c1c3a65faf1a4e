// The daemon itself, operations, the host network, SSH keys and the dashboard on the wire.

export interface DaemonStatus {
  pid: number;
  version: string;
  commit: string;
  buildDate: string;
  root: string;
  socket: string;
  uptimeSeconds: number;
  schemaVersion: number;
  vms: { total: number; running: number };
  activeCalls: number;
}

/** daemon.stop; `network` when cleanupNetwork was asked. */
export interface DaemonStopResult {
  stopping: true;
  pid: number;
  network?: { cleaned: boolean; reason?: string };
}

export type OperationState = "running" | "succeeded" | "failed" | "cancelled";

/** A long operation the daemon ran or runs (ops.list). */
export interface OperationView {
  id: number;
  kind: string;
  target: string;
  state: OperationState;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
}

/** net.status. */
export interface NetworkStatus {
  enabled: boolean;
  up: boolean;
  bridge: string;
  subnet: string | null;
  gateway: string | null;
  dns: string | null;
  /** Where names outside `.vm` are resolved for guests allowed out. */
  dnsUpstream: string[];
  idleTaps: string[];
}

/** net.dns.setup: resolvectl commands the daemon ran, or instructions for the user. */
export type DnsSetupPlan = { kind: "resolved"; commands: string[][]; text: string } | { kind: "manual"; text: string };

/** ssh.authorize: the key is kept for new VMs and installed in the running ones. */
export interface AuthorizeResult {
  keys: number;
  installed: string[];
  noServer: { vm: string; image: string }[];
  failed: { vm: string; error: string }[];
}

/** web.info: where the dashboard is, with a fresh login link. */
export interface WebInfo {
  url: string;
  loginUrl: string;
  token: string;
}

/** web.reload: the dashboard's state after applying the config file. */
export interface WebState {
  enabled: boolean;
  url?: string;
  error?: string;
}
