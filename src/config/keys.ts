// The keys `banger config get|set|unset` knows: what each means, the environment variable
// that overrides it, its built-in default, and when a change takes effect. Also the
// effective value of a key (env > config file > default) and the text → value parsing
// `config set` does. Whether a kernel or image name exists is the daemon's to say.
import { invalidArgument } from "../util/errors.ts";
import { NAME_PATTERN } from "../util/names.ts";
import { parseSize } from "../util/size.ts";
import type { Config } from "./index.ts";

/**
 * The dashboard's port when none is configured: fixed, so a bookmark keeps working across
 * daemon restarts (B-A-N-G on a phone keypad). BANGER_WEB_PORT overrides it (tests use 0).
 */
export const DEFAULT_WEB_PORT = 2264;

/** The E2B-compatible API's port when none is configured (BANGER_API_PORT overrides it; tests use 0). */
export const DEFAULT_API_PORT = 3049;

/** How many idle taps `network.tap_pool` may keep ready. */
export const MAX_TAP_POOL = 64;

/** The free-space floor when none is configured: 1 GiB (a fixed size, not a share of the disk). */
export const DEFAULT_MIN_FREE_BYTES = 1024 ** 3;

/** What warm pools may hold in guest memory, all pools together, when none is configured: 2 GiB. */
export const DEFAULT_POOL_MAX_MEMORY = 2 * 1024 ** 3;

/**
 * QEMU's TCG translation cache per VM when none is configured: 64 MiB. QEMU's own default is
 * 1 GiB (or an eighth of the host's RAM), and the cache only grows: translations of code the
 * guest rewrites or replaces (every program it installs or builds, its page cache reused) stay
 * until the cache is full. A booted VM here holds ~54 MiB after boot and a command's working
 * set is ~20 MiB, so 64 MiB never flushes them, yet bounds what a long-lived VM (a fork, a
 * pooled VM) costs: without it, installing and running 50 programs added ~27 MiB each time.
 */
export const DEFAULT_TCG_CACHE = 64 * 1024 ** 2;
/** snapshot.standbys: default and most (each a waiting QEMU). */
export const DEFAULT_STANDBYS = 2;
const MAX_STANDBYS = 8;

/**
 * When a change applies: "live" (the daemon reads the config per operation), "web" (the
 * dashboard is restarted in place by `config set`), "api" (the E2B API likewise), "restart"
 * (read when the daemon starts).
 */
export type Applies = "live" | "web" | "api" | "restart";

export interface KeySpec {
  description: string;
  applies: Applies;
  /** The built-in value when neither the environment nor the file sets it (null: `unset` says what happens). */
  default: unknown;
  /** What banger does when the key is unset and has no fixed default. */
  unset?: string;
  /** An environment variable of the daemon that wins over the file, and how it reads. */
  env?: { name: string; read: (text: string) => unknown };
}

const onOff = (text: string): boolean | undefined => {
  const t = text.toLowerCase();
  return ["on", "1", "true"].includes(t) ? true : ["off", "0", "false"].includes(t) ? false : undefined;
};

export const CONFIG_KEY_SPECS: Record<string, KeySpec> = {
  default_kernel: { description: "kernel used when a VM or image names none (unset: the only kernel, when there is one)", applies: "live", default: null, unset: "the only kernel, when there is one" },
  default_image: {
    description: "image used by `vm run` / `vm create` without --image (unset: the only image, when there is one)",
    applies: "live",
    default: null,
    unset: "the only image, when there is one",
  },
  kernel_catalog: {
    description: "path or URL of a kernel catalog.json replacing the embedded one",
    applies: "live",
    default: null,
    unset: "the embedded catalog",
    env: { name: "BANGER_KERNEL_CATALOG", read: (t) => t },
  },
  image_catalog: {
    description: "path or URL of an image catalog.json replacing the embedded one",
    applies: "live",
    default: null,
    unset: "the embedded catalog",
    env: { name: "BANGER_IMAGE_CATALOG", read: (t) => t },
  },
  vmm: {
    description: "qemu or firecracker, for VMs created from now on (unset: firecracker when on PATH and /dev/kvm is usable, else qemu; doctor says which)",
    applies: "live",
    default: null,
    unset: "firecracker when it is on PATH and /dev/kvm is usable, else qemu",
    env: { name: "BANGER_VMM", read: (t) => t },
  },
  insecure_registries: { description: "comma-separated registries that may be reached over plain HTTP", applies: "live", default: [] },
  "web.enabled": {
    description: "serve the dashboard (true/false); `config set` starts or stops it at once",
    applies: "web",
    default: false,
    env: { name: "BANGER_WEB", read: (t) => (t === "1" ? true : undefined) },
  },
  "web.port": { description: `dashboard port (default ${DEFAULT_WEB_PORT}, fixed)`, applies: "web", default: DEFAULT_WEB_PORT, env: { name: "BANGER_WEB_PORT", read: (t) => Number(t) } },
  "web.address": { description: "dashboard listen address (non-loopback needs care)", applies: "web", default: "127.0.0.1" },
  "api.enabled": {
    description: "serve the E2B-compatible API on 127.0.0.1 (true/false); `config set` starts or stops it at once (banger api env)",
    applies: "api",
    default: false,
    env: { name: "BANGER_API", read: (t) => (t === "1" ? true : undefined) },
  },
  "api.port": { description: `E2B-compatible API port (default ${DEFAULT_API_PORT})`, applies: "api", default: DEFAULT_API_PORT, env: { name: "BANGER_API_PORT", read: (t) => Number(t) } },
  "network.enabled": {
    description: "VM networking (bridge, NAT, DNS): default on for the system root, off under $BANGER_HOME",
    applies: "restart",
    default: null,
    env: { name: "BANGER_NETWORK", read: onOff },
  },
  "network.subnet": { description: "the VMs' /24 (default: one inside 172.16.0.0/12 that no route uses)", applies: "restart", default: null, unset: "a /24 inside 172.16.0.0/12 that no route uses" },
  "network.bridge": { description: "bridge name (default banger0)", applies: "restart", default: "banger0" },
  "network.tap_pool": { description: "taps kept ready for new VMs (default 2)", applies: "restart", default: 2, env: { name: "BANGER_TAP_POOL", read: (t) => Number(t) } },
  "dns.upstream": {
    description: "comma-separated resolvers (IP or IP:PORT) guests' names go to (default: the host's /etc/resolv.conf)",
    applies: "restart",
    default: null,
    unset: "the host's /etc/resolv.conf",
    env: {
      name: "BANGER_DNS_UPSTREAM",
      read: (t) =>
        t
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== ""),
    },
  },
  min_free_bytes: { description: "free space kept under the root, e.g. 2G: vm create/start/resume refuse below it (default 1G)", applies: "live", default: DEFAULT_MIN_FREE_BYTES },
  "qemu.tcg_cache": {
    description:
      "QEMU without KVM: the translation cache each VM may fill, e.g. 128M (default 64M; more: fewer re-translations, more host memory per VM); applies to VMs started or restored from then on",
    applies: "live",
    default: DEFAULT_TCG_CACHE,
  },
  "snapshot.standbys": {
    description: `QEMUs kept waiting for the next restore of the snapshots restored or taken last, or the next fork of the VMs forked last, ~15-20 MiB each (default ${DEFAULT_STANDBYS}; 0: none, a restore or fork starts its QEMU)`,
    applies: "live",
    default: DEFAULT_STANDBYS,
  },
  "pool.max_memory": {
    description: "guest memory all warm pools together may hold, e.g. 4G: `pool set` beyond it is refused, refills stop at it (default 2G)",
    applies: "live",
    default: DEFAULT_POOL_MAX_MEMORY,
  },
};

/** The keys with what each one means (for --help). */
export const CONFIG_KEYS: Record<string, string> = Object.fromEntries(Object.entries(CONFIG_KEY_SPECS).map(([k, s]) => [k, s.description]));

export function keySpec(key: string): KeySpec {
  const spec = Object.hasOwn(CONFIG_KEY_SPECS, key) ? CONFIG_KEY_SPECS[key] : undefined;
  if (!spec) throw invalidArgument(`unknown config key ${JSON.stringify(key)}`, `known keys: ${Object.keys(CONFIG_KEY_SPECS).join(", ")}`);
  return spec;
}

/** Reads one key (dotted for nested ones) from a config file's contents. */
export function getConfigValue(config: Config, key: string): unknown {
  keySpec(key);
  const [head, sub] = key.split(".");
  const v = (config as Record<string, unknown>)[head!];
  return sub === undefined ? v : (v as Record<string, unknown> | undefined)?.[sub];
}

export interface EffectiveValue {
  key: string;
  /** What the daemon uses; null when unset with no fixed default (the description says what happens). */
  value: unknown;
  source: "env" | "config" | "default";
  /** The variable, when source is "env". */
  env?: string;
}

/** The value in effect for a daemon with this environment: env > config file > default. */
export function effectiveValue(config: Config, key: string, env: NodeJS.ProcessEnv = process.env): EffectiveValue {
  const spec = keySpec(key);
  const fromEnv = spec.env && env[spec.env.name] ? spec.env.read(env[spec.env.name]!) : undefined;
  if (fromEnv !== undefined) return { key, value: fromEnv, source: "env", env: spec.env!.name };
  const fromFile = getConfigValue(config, key);
  if (fromFile !== undefined) return { key, value: fromFile, source: "config" };
  if (key === "network.enabled") return { key, value: !env.BANGER_HOME, source: "default" };
  return { key, value: spec.default, source: "default" };
}

/** The value `config set KEY TEXT` stores, checked by the key's type. */
export function parseConfigText(key: string, text: string): unknown {
  switch (key) {
    case "insecure_registries":
    case "dns.upstream":
      return text
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    case "web.enabled":
    case "api.enabled":
    case "network.enabled":
      if (text !== "true" && text !== "false") throw invalidArgument(`${key} takes true or false`);
      return text === "true";
    case "network.tap_pool":
      return checkTapPool(text, key);
    case "snapshot.standbys":
      return checkStandbys(typedNumber(text), key);
    case "web.port":
      return checkWebPort(Number(text));
    case "api.port":
      return checkWebPort(Number(text), { key: "api.port" });
    case "min_free_bytes":
    case "pool.max_memory":
      return parseSize(text, key);
    case "qemu.tcg_cache":
      return checkTcgCache(parseSize(text, key));
    case "vmm":
      if (text !== "qemu" && text !== "firecracker") throw invalidArgument(`${key} takes qemu or firecracker`);
      return text;
    case "default_kernel":
    case "default_image":
      if (!NAME_PATTERN.test(text)) throw invalidArgument(`${key}: invalid name ${JSON.stringify(text)}`);
      return text;
    default:
      return text;
  }
}

/** The smallest and largest qemu.tcg_cache: QEMU takes whole MiB, and never uses more than 2 GiB. */
const TCG_CACHE_RANGE = [1024 ** 2, 2 * 1024 ** 3] as const;

/** qemu.tcg_cache's one check (config set and the file): whole MiB from 1M to 2G. */
export function checkTcgCache(value: unknown, what = "qemu.tcg_cache"): number {
  const [min, max] = TCG_CACHE_RANGE;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value % 1024 ** 2 !== 0 || value < min || value > max) {
    throw invalidArgument(`${what} takes a whole number of MiB from 1M to 2G`, "banger config set qemu.tcg_cache 128M");
  }
  return value;
}

/** A count setting: a whole number from 0 to `max`, a number (not a string) or one line naming `what`. */
function wholeUpTo(value: unknown, max: number, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) throw invalidArgument(`${what} takes a whole number from 0 to ${max}`);
  return value;
}

/** A number typed as text (`config set`, an environment variable); blank is not 0. */
const typedNumber = (text: string) => (text.trim() === "" ? Number.NaN : Number(text));

/** snapshot.standbys: a whole number from 0 to MAX_STANDBYS. */
export function checkStandbys(value: unknown, what = "snapshot.standbys"): number {
  return wholeUpTo(value, MAX_STANDBYS, what);
}

/**
 * network.tap_pool's one check, for `config set`, the file and BANGER_TAP_POOL alike: a whole
 * number from 0 to MAX_TAP_POOL (a numeric string counts, as the daemon always read it).
 */
export function checkTapPool(value: unknown, what = "network.tap_pool"): number {
  return wholeUpTo(typeof value === "string" ? typedNumber(value) : value, MAX_TAP_POOL, what);
}

/** The tap pool size the daemon uses: BANGER_TAP_POOL > network.tap_pool > 2, checked. */
export function tapPoolSize(config: Config, env: NodeJS.ProcessEnv = process.env): number {
  const v = effectiveValue(config, "network.tap_pool", env);
  return checkTapPool(v.value, v.env ?? "network.tap_pool");
}

/**
 * web.port's (and api.port's) one check. `config set` stores 1-65535 (a fixed port keeps bookmarks working);
 * where the dashboard starts, 0 (any free port, what tests set through BANGER_WEB_PORT) is
 * fine too, and the error says how to fix the file.
 */
export function checkWebPort(value: unknown, opts: { ephemeralOk?: boolean; key?: "web.port" | "api.port" } = {}): number {
  const min = opts.ephemeralOk ? 0 : 1;
  const key = opts.key ?? "web.port";
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > 65535) {
    throw invalidArgument(`${key} takes a port number from ${min} to 65535`, opts.ephemeralOk ? `banger config set ${key} 8080` : undefined);
  }
  return value;
}
