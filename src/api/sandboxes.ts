// The sandbox methods: E2B-style sandboxes (a VM with an expiry, metadata, env vars and an
// access token), which the E2B-compatible API (e2b/) serves, and the API's own api.* methods
// (where it listens, its key). Sandboxes are ordinary VMs: vm.* sees them too.

/** A sandbox as the daemon reports it. Times are ISO 8601. */
export interface SandboxView {
  /** The E2B sandbox id; also the name of its VM (so `banger vm ls` lists it). */
  id: string;
  vm: string;
  /** The image it was created from (the E2B templateID), or the snapshot for one made from a snapshot. */
  template: string;
  metadata: Record<string, string>;
  /** Every process started through the API gets them. */
  envVars: Record<string, string>;
  /** What the sandbox plane wants in X-Access-Token; null when created with secure: false. */
  accessToken: string | null;
  /** running or paused (the VM's state: a stopped or crashed VM reads running until asked). */
  state: "running" | "paused";
  vmState: string;
  startedAt: string;
  /** When it expires: removed then, or paused when autoPause. */
  endAt: string;
  autoPause: boolean;
  cpus: number;
  memoryBytes: number;
  diskBytes: number;
  /** True when the VM came ready from a warm pool. */
  fromPool?: true;
}

export interface SandboxCreateParams {
  /** An image name; "base" or omitted: the default image. */
  template?: string;
  /** Restore this snapshot instead (a sandbox made from Sandbox.createSnapshot's result). */
  fromSnapshot?: string;
  timeoutMs: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  autoPause?: boolean;
  /** Give the sandbox an access token (the SDK's default). */
  secure?: boolean;
  /** False: no network egress (the VM's net policy `none`). Default true. */
  internet?: boolean;
}

/** The E2B API's state (api.reload, api.info). */
export interface ApiState {
  enabled: boolean;
  /** http://127.0.0.1:PORT, when it listens. */
  url?: string;
  /** Why it is not listening although enabled (a port in use). */
  error?: string;
}

type Id = { id: string };

export interface SandboxMethods {
  "sandbox.create": { params: SandboxCreateParams; result: SandboxView };
  /** `metadata`: every pair must match; `state`: only these. */
  "sandbox.list": { params: { metadata?: Record<string, string>; state?: ("running" | "paused")[] } | undefined; result: SandboxView[] };
  "sandbox.show": { params: Id; result: SandboxView };
  /** Removes the VM (killed at once: nothing in it is kept). */
  "sandbox.kill": { params: Id; result: { removed: string } };
  /** Expires timeoutMs from now. */
  "sandbox.timeout": { params: Id & { timeoutMs: number }; result: SandboxView };
  /** Resumes a paused sandbox; with timeoutMs, also sets its expiry (never shortens it). */
  "sandbox.connect": { params: Id & { timeoutMs?: number }; result: SandboxView };
  "sandbox.pause": { params: Id; result: SandboxView };
  /** `count` new sandboxes from the sandbox's current state (vm.fork); each expires timeoutMs from now. */
  "sandbox.fork": { params: Id & { count?: number; timeoutMs: number }; result: SandboxView[] };
  /** A snapshot of the running sandbox (vm.snapshot); sandbox.create's fromSnapshot restores it. */
  "sandbox.snapshot": { params: Id & { name?: string }; result: { snapshot: string; sandbox: string } };

  /** Where the API listens and its key (for `banger api env`). */
  "api.info": { params: undefined | Record<string, never>; result: ApiState & { key: string } };
  /** Applies the config file's api.* (config set calls it). */
  "api.reload": { params: undefined | Record<string, never>; result: ApiState };
  /** A new key; the old one stops working at once. */
  "api.key.rotate": { params: undefined | Record<string, never>; result: { key: string } };
}
