// The daemon's network manager: the state that ties the net module to VMs. It decides
// whether networking is on (BANGER_NETWORK / config `network.enabled`), chooses and
// persists the bridge subnet, hands out guest addresses at create (stored in vms.ip) and
// taps at boot (vms.tap, from a pool of pre-created ones), re-renders the nftables rules
// from the store after every change, serves the guests' DNS on the gateway (guestdns.ts:
// `.vm` names, and other names through the host's resolvers for VMs allowed out), and undoes it all:
// per VM on stop/kill/rm, for VMs that are gone at daemon start, and entirely on
// `daemon stop --cleanup-network`. With networking off it never touches the host's network:
// every VM boots without a NIC (as with `--net none`). Its RPC methods are in
// network-methods.ts; SSH keys in guests in ssh-keys.ts.
import { performance } from "node:perf_hooks";
import { sshPaths, tapPoolSize, type Config, type Paths } from "../config/index.ts";
import type { NetworkStatus } from "../api/index.ts";
import {
  DEFAULT_BRIDGE,
  DEFAULT_TAP_PREFIX,
  TapPool,
  allocateAddress,
  applyNat,
  chooseSubnet,
  deleteTap,
  ensureBridge,
  forgetKnownHost,
  formatSubnet,
  gatewayOf,
  getLink,
  guestKernelParams,
  listRoutes,
  macForVm,
  parseSubnet,
  setupDns,
  subnetContains,
  sweepTaps,
  teardownHostNetwork,
  validateIfname,
  type DnsSetupPlan,
  type NetTarget,
  type Subnet,
  type Upstream,
  type VmNetRule,
} from "../net/index.ts";
import type { Store, VmNetPolicy, VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, errorLine, invalidArgument } from "../util/errors.ts";
import { describeUpstreams, dnsUpstreamSetting, startGuestDns, type GuestDns } from "./guestdns.ts";
import type { Logger } from "./logger.ts";

/** What the network section of config.json may hold (validated here, but tap_pool: config/keys.ts tapPoolSize). */
interface NetworkConfig {
  enabled?: unknown;
  subnet?: unknown;
  bridge?: unknown;
}

export interface NetworkSettings {
  enabled: boolean;
  bridge: string;
  /** Set by config: wins over the persisted choice. */
  subnet?: Subnet;
  /** Idle taps kept ready; 0 creates each VM's tap at boot. */
  tapPool: number;
  tapPrefix: string;
  /** Resolvers the guests' DNS forwards to, when chosen (env or config); else the host's resolv.conf. */
  dnsUpstream?: Upstream[];
}

const SUBNET_SETTING = "net.subnet";
const DNS_SETUP_SETTING = "net.dns_setup";

/**
 * Networking settings from the environment and config.json. On by default for the system
 * root only; `BANGER_NETWORK=off` or `network.enabled: false` turn it off; `BANGER_NETWORK=on`
 * or `network.enabled: true` turn it on (e.g. inside a test's network namespace);
 * `BANGER_TAP_POOL=N` overrides `network.tap_pool`; `BANGER_DNS_UPSTREAM` / `dns.upstream`
 * choose the guests' upstream resolvers (guestdns.ts).
 */
export function networkSettings(config: Config, env: NodeJS.ProcessEnv = process.env): NetworkSettings {
  const raw = ((config as { network?: unknown }).network ?? {}) as NetworkConfig;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalidArgument('config: "network" must be an object');
  const envSwitch = env.BANGER_NETWORK?.toLowerCase();
  if (envSwitch !== undefined && envSwitch !== "" && !["on", "off", "1", "0", "true", "false"].includes(envSwitch)) {
    throw invalidArgument(`BANGER_NETWORK=${env.BANGER_NETWORK}: use on or off`);
  }
  if (raw.enabled !== undefined && typeof raw.enabled !== "boolean") throw invalidArgument("config: network.enabled must be true or false");
  // On by default only for the system daemon: a state root under $BANGER_HOME (tests, dev
  // homes, demos) leaves the host's network alone unless it asks for networking.
  const enabled = envSwitch ? ["on", "1", "true"].includes(envSwitch) : (raw.enabled ?? !env.BANGER_HOME);
  if (raw.bridge !== undefined && typeof raw.bridge !== "string") throw invalidArgument("config: network.bridge must be a string");
  if (raw.subnet !== undefined && typeof raw.subnet !== "string") throw invalidArgument("config: network.subnet must be a string like 172.30.0.0/24");
  const tapPool = tapPoolSize(config, env);
  const dnsUpstream = dnsUpstreamSetting(config, env);
  return {
    enabled,
    bridge: validateIfname((raw.bridge as string | undefined) ?? DEFAULT_BRIDGE, "bridge name"),
    ...(raw.subnet === undefined ? {} : { subnet: parseSubnet(raw.subnet as string) }),
    tapPool,
    tapPrefix: DEFAULT_TAP_PREFIX,
    ...(dnsUpstream === undefined ? {} : { dnsUpstream }),
  };
}

/**
 * What boot.ts adds to a VM's spec: its tap and MAC, and the agent's kernel parameters (the
 * same address as `guest`, which a restored guest is told through the agent instead).
 */
export interface VmNic {
  tap: string;
  mac: string;
  kernelParams: string[];
  guest: { ip: string; prefixLength: number; gateway: string; dns: string };
}

interface ManagerDeps {
  store: Store;
  log: Logger;
  paths: Paths;
  settings: NetworkSettings;
  /** Where host commands run; {} is the daemon's own network namespace. */
  target?: NetTarget;
}

export class NetworkManager {
  readonly settings: NetworkSettings;
  readonly #store: Store;
  readonly #log: Logger;
  readonly #paths: Paths;
  readonly #target: NetTarget;
  #subnet: Subnet | undefined;
  #up: Promise<void> | undefined;
  #pool: TapPool | undefined;
  #dns: GuestDns | undefined;
  /** Serializes host changes (setup, nft applies, teardown): each waits for the previous. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: ManagerDeps) {
    this.settings = deps.settings;
    this.#store = deps.store;
    this.#log = deps.log;
    this.#paths = deps.paths;
    this.#target = deps.target ?? {};
  }

  get enabled(): boolean {
    return this.settings.enabled;
  }

  /** Whether a VM with this policy gets a NIC at all. */
  wantsNic(policy: VmNetPolicy): boolean {
    return this.enabled && policy !== "none";
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * The bridge subnet: config's when set, else the one chosen earlier (persisted in the
   * store), else a /24 in 172.16.0.0/12 that overlaps none of the namespace's routes.
   */
  async subnet(): Promise<Subnet> {
    if (this.#subnet) return this.#subnet;
    let subnet = this.settings.subnet;
    const saved = this.#store.getSetting(SUBNET_SETTING);
    if (!subnet && saved) subnet = parseSubnet(saved);
    subnet ??= chooseSubnet(await listRoutes(this.#target), { bridge: this.settings.bridge });
    if (saved !== formatSubnet(subnet)) this.#store.setSetting(SUBNET_SETTING, formatSubnet(subnet));
    this.#subnet = subnet;
    return subnet;
  }

  /**
   * Prepares `allocate` for a VM with this policy (the first call chooses the subnet).
   * Split from allocate so the caller can allocate and insert its row in one tick.
   */
  async prepare(policy: VmNetPolicy): Promise<void> {
    if (this.wantsNic(policy))
      await this.subnet().catch((err: unknown) => {
        throw networkError("cannot choose a subnet for VMs", err);
      });
  }

  /** A free guest address for a VM with this policy (null without a NIC). Synchronous: see prepare. */
  allocate(policy: VmNetPolicy): string | null {
    if (!this.wantsNic(policy) || !this.#subnet) return null;
    const used = this.#store
      .listVms()
      .map((v) => v.ip)
      .filter((ip): ip is string => ip !== null);
    return allocateAddress(this.#subnet, used);
  }

  /**
   * Before a VM boots: its address (re-allocated if the subnet changed), the host side up,
   * a tap from the pool, and the rules updated. Undefined when the VM gets no NIC.
   */
  async attach(vm: VmRecord): Promise<VmNic | undefined> {
    if (!this.wantsNic(vm.net)) return undefined;
    const started = performance.now();
    await this.ensureUp();
    const subnet = await this.subnet();
    let ip = vm.ip;
    if (!ip || !subnetContains(subnet, ip)) {
      ip = this.allocate(vm.net);
      this.#store.updateVm(vm.name, { ip });
    }
    let tap: string | undefined;
    try {
      tap = await this.#pool!.acquire();
      this.#store.updateVm(vm.name, { tap });
      const tapMs = performance.now() - started;
      await this.apply();
      this.#log.info("vm network attached", { vm: vm.name, tap, ip, policy: vm.net, tapMs: round(tapMs), attachMs: round(performance.now() - started) });
      const gateway = gatewayOf(subnet);
      return { tap, mac: macForVm(vm.id), kernelParams: guestKernelParams(ip!, subnet), guest: { ip: ip!, prefixLength: subnet.prefix, gateway, dns: gateway } };
    } catch (err) {
      if (tap) await this.detach(vm.name).catch(() => undefined);
      throw networkError(`cannot attach vm ${vm.name} to the network`, err);
    }
  }

  /** After a VM stopped (or before it is removed): its tap deleted and its rules gone. */
  async detach(name: string): Promise<void> {
    const vm = this.#store.getVm(name);
    if (!vm?.tap) return;
    const tap = vm.tap;
    this.#store.updateVm(name, { tap: null });
    if (!this.enabled) return;
    // A used tap is deleted, never pooled again (it may carry the last guest's state).
    const release = this.#pool ? this.#pool.release(tap) : deleteTap(this.#target, tap);
    await release.catch((err: unknown) => this.#log.warn("tap release failed", { vm: name, tap, error: errorLine(err) }));
    await this.apply().catch((err: unknown) => this.#log.warn("nft update failed", { vm: name, error: errorLine(err) }));
  }

  /** On `vm rm`: after detach, forget the VM's SSH host key (a new VM may reuse the name). */
  async forget(name: string): Promise<void> {
    await this.detach(name);
    await forgetKnownHost(sshPaths(this.#paths).knownHosts, name).catch(() => undefined);
  }

  /** Re-renders the nftables rules from the store (every VM that holds a tap). Idempotent. */
  apply(): Promise<void> {
    return this.#serial(async () => {
      if (!this.#up || !this.#subnet) return;
      await applyNat(this.#target, { bridge: this.settings.bridge, subnet: this.#subnet, vms: this.#rules() });
    });
  }

  #rules(): VmNetRule[] {
    return this.#store
      .listVms()
      .filter((v) => v.tap && v.ip && v.net !== "none")
      .map((v) => ({ ip: v.ip!, port: v.tap!, egress: v.net, peer: v.netPeer }));
  }

  #tapsInUse(): string[] {
    return this.#store
      .listVms()
      .map((v) => v.tap)
      .filter((t): t is string => t !== null);
  }

  /** Brings the host side up once: bridge, rules, leftover taps swept, pool filled, DNS served. */
  ensureUp(): Promise<void> {
    if (!this.enabled) return Promise.reject(new BangerError(ErrorCode.Unavailable, "networking is off", "unset BANGER_NETWORK=off or set network.enabled to true in config.json"));
    this.#up ??= this.#serial(() => this.#bringUp()).catch((err: unknown) => {
      this.#up = undefined;
      throw networkError("cannot set up the VM network", err);
    });
    return this.#up;
  }

  async #bringUp(): Promise<void> {
    const started = performance.now();
    const subnet = await this.subnet();
    const { bridge, tapPrefix, tapPool } = this.settings;
    await ensureBridge(this.#target, { name: bridge, subnet });
    this.#subnet = subnet;
    await applyNat(this.#target, { bridge, subnet, vms: this.#rules() });
    const inUse = this.#tapsInUse();
    const swept = await sweepTaps(this.#target, inUse, tapPrefix);
    this.#pool = new TapPool({ target: this.#target, bridge, size: tapPool, prefix: tapPrefix, inUse, onError: (err) => this.#log.warn("tap pool refill failed", { error: errorLine(err) }) });
    await this.#pool.fill();
    const gateway = gatewayOf(subnet);
    try {
      this.#dns = await startGuestDns({ gateway, store: this.#store, upstreams: this.settings.dnsUpstream });
    } catch (err) {
      this.#log.warn("no DNS for guests", { error: errorLine(err) });
    }
    // Link settings for systemd-resolved vanish with the bridge: put them back if asked once.
    if (this.#store.getSetting(DNS_SETUP_SETTING) === "1") {
      await setupDns(this.#target, bridge, gateway).catch((err: unknown) => this.#log.warn("dns setup failed", { error: errorLine(err) }));
    }
    this.#log.info("vm network up", {
      bridge,
      subnet: formatSubnet(subnet),
      gateway,
      taps: tapPool,
      sweptTaps: swept,
      dnsUpstream: describeUpstreams(this.#dns),
      ms: round(performance.now() - started),
    });
  }

  /**
   * At daemon start, after the VMs were reconciled: taps of VMs that are not running are
   * released, and when any VM still runs with a NIC (or banger's bridge exists from an
   * earlier run) the host side is brought back to the store's state (leftover taps
   * swept, rules re-rendered). With networking off, nothing is touched.
   */
  async reconcile(): Promise<{ released: string[] }> {
    const released: string[] = [];
    for (const vm of this.#store.listVms()) {
      // A paused VM (QEMU stopped it on a full disk) keeps its tap: `vm resume` continues it.
      if (vm.tap && vm.state !== "running" && vm.state !== "paused") {
        this.#store.updateVm(vm.name, { tap: null });
        released.push(vm.tap);
      }
    }
    if (!this.enabled) return { released };
    const running = this.#store.listVms().some((v) => v.tap);
    const bridgeExists = (await getLink(this.#target, this.settings.bridge).catch(() => undefined)) !== undefined;
    if (running || bridgeExists) await this.ensureUp();
    return { released };
  }

  /** `banger dns setup`: route `*.vm` to the gateway through systemd-resolved, or say how. */
  async setupDns(): Promise<DnsSetupPlan> {
    await this.ensureUp();
    const plan = await setupDns(this.#target, this.settings.bridge, gatewayOf(await this.subnet()));
    if (plan.kind === "resolved") this.#store.setSetting(DNS_SETUP_SETTING, "1");
    return plan;
  }

  status(): NetworkStatus {
    const subnet = this.#subnet ?? (this.#store.getSetting(SUBNET_SETTING) ? parseSubnet(this.#store.getSetting(SUBNET_SETTING)!) : undefined);
    return {
      enabled: this.enabled,
      up: this.#up !== undefined && this.#pool !== undefined,
      bridge: this.settings.bridge,
      subnet: subnet ? formatSubnet(subnet) : null,
      gateway: subnet ? gatewayOf(subnet) : null,
      dns: this.#dns ? `${this.#dns.server.host}:${this.#dns.server.port}` : null,
      dnsUpstream: describeUpstreams(this.#dns),
      idleTaps: this.#pool ? [...this.#pool.idle] : [],
    };
  }

  /** Daemon shutdown: stop serving DNS and delete idle taps. Running VMs keep their taps and rules. */
  async close(): Promise<void> {
    await this.#serial(async () => {
      await this.#dns?.server.close().catch(() => undefined);
      this.#dns = undefined;
      await this.#pool?.close().catch(() => undefined);
    });
  }

  /**
   * `daemon stop --cleanup-network`: banger's nft tables, every banger tap and the bridge
   * removed. Refused while VMs run with a NIC (it would cut them off).
   */
  async teardown(): Promise<{ cleaned: boolean; reason?: string }> {
    if (!this.enabled) return { cleaned: false, reason: "networking is off: nothing of banger's is on the host's network" };
    const attached = this.#store
      .listVms()
      .filter((v) => v.tap && (v.state === "running" || v.state === "paused"))
      .map((v) => v.name);
    if (attached.length > 0) {
      throw new BangerError(ErrorCode.InUse, `VMs are running with networking: ${attached.join(", ")}`, "stop them first (banger vm stop NAME), then run this again");
    }
    await this.close();
    await this.#serial(async () => {
      await teardownHostNetwork(this.#target, { bridge: this.settings.bridge, tapPrefix: this.settings.tapPrefix });
      this.#up = undefined;
      this.#pool = undefined;
    });
    return { cleaned: true };
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function networkError(what: string, err: unknown): BangerError {
  if (err instanceof BangerError && err.code !== ErrorCode.Failed) return err;
  return new BangerError(
    ErrorCode.Failed,
    `${what}: ${errorLine(err)}`,
    "networking needs root, iproute2 and nftables; or create the VM with --net none, or turn networking off (BANGER_NETWORK=off)",
    { cause: err },
  );
}
