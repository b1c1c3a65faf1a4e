// Package config owns where banger keeps things and what the user configured.
//
// Every path banger writes to is derived here from one state root: $BANGER_HOME when set
// (tests always set it), else /var/lib/banger with sockets under /run/banger. The config
// file is <root>/config.json. This module reads and writes only that file; the directories
// it names belong to the modules that fill them (store, bundle, vmm, ...), which lay out
// their own files inside (bundle: cache/bundles, oci: cache/blobs). keys.ts says what
// each key means, its default, the environment variable overriding it and when a change applies.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { DEFAULT_MIN_FREE_BYTES, DEFAULT_POOL_MAX_MEMORY, DEFAULT_STANDBYS, DEFAULT_TCG_CACHE, checkStandbys, checkTcgCache, effectiveValue, getConfigValue, parseConfigText } from "./keys.ts";

export {
  CONFIG_KEYS,
  CONFIG_KEY_SPECS,
  DEFAULT_MIN_FREE_BYTES,
  DEFAULT_POOL_MAX_MEMORY,
  DEFAULT_API_PORT,
  DEFAULT_TCG_CACHE,
  DEFAULT_WEB_PORT,
  MAX_TAP_POOL,
  checkTapPool,
  checkWebPort,
  effectiveValue,
  getConfigValue,
  keySpec,
  parseConfigText,
  tapPoolSize,
  type Applies,
  type EffectiveValue,
  type KeySpec,
} from "./keys.ts";

export interface Paths {
  root: string;
  /** Sockets and pid files: <root>/run, or /run/banger for the system root. */
  runDir: string;
  socket: string;
  /** The running daemon's pid (beside its socket). */
  pidFile: string;
  /** The build id of the daemon that runs (launch.ts restarts one built from other sources). */
  buildFile: string;
  lockFile: string;
  db: string;
  logsDir: string;
  daemonLog: string;
  /** The detached daemon's stdout and stderr (what it says before its log is open). */
  daemonStderr: string;
  configFile: string;
  /** The E2B-compatible API's key (0600, made on first use; e2b/keys.ts). */
  apiKeyFile: string;
  kernelsDir: string;
  imagesDir: string;
  vmsDir: string;
  /** <root>/snapshots: one directory per snapshot (snapshotDir). */
  snapshotsDir: string;
  /** Content-addressed downloads (bundles by sha256, OCI blobs by digest). */
  cacheDir: string;
  /** Each kernel's initramfs with the current agent appended (kernel/initramfs.ts bootInitramfs). */
  initrdCacheDir: string;
  /** Downloaded Debian kernel packages (kernel/apt.ts). */
  debsCacheDir: string;
  /** Image presets' build cache (debootstrap's .debs, work trees). */
  presetsCacheDir: string;
  /** Host probes worth keeping between runs (host/kvm.ts: the KVM probe). */
  hostCacheDir: string;
  /** Scratch space on the same filesystem as the stores, so publishing is a rename. */
  tmpDir: string;
  /** `banger ssh-config`'s files (sshPaths): its include file, known hosts and own key. */
  sshDir: string;
  /**
   * Running QEMU VMs' guest RAM files (vmMemoryFile), on a tmpfs: /dev/shm/banger-<12 hex of
   * sha256(root)>, so two roots (tests' temporary homes) never share one.
   */
  memoryDir: string;
}

export const SYSTEM_ROOT = "/var/lib/banger";
export const SYSTEM_RUN_DIR = "/run/banger";

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): Paths {
  const home = env.BANGER_HOME;
  const root = home && home !== "" ? home : SYSTEM_ROOT;
  const runDir = home && home !== "" ? join(root, "run") : SYSTEM_RUN_DIR;
  return {
    root,
    runDir,
    socket: join(runDir, "bangerd.sock"),
    pidFile: join(runDir, "bangerd.pid"),
    buildFile: join(runDir, "bangerd.build"),
    lockFile: join(root, "bangerd.lock"),
    db: join(root, "banger.db"),
    logsDir: join(root, "logs"),
    daemonLog: join(root, "logs", "bangerd.log"),
    daemonStderr: join(root, "logs", "bangerd.stderr"),
    configFile: join(root, "config.json"),
    apiKeyFile: join(root, "api-key"),
    kernelsDir: join(root, "kernels"),
    imagesDir: join(root, "images"),
    vmsDir: join(root, "vms"),
    snapshotsDir: join(root, "snapshots"),
    cacheDir: join(root, "cache"),
    initrdCacheDir: join(root, "cache", "initrd"),
    debsCacheDir: join(root, "cache", "debs"),
    presetsCacheDir: join(root, "cache", "presets"),
    hostCacheDir: join(root, "host"),
    tmpDir: join(root, "tmp"),
    sshDir: join(root, "ssh"),
    memoryDir: join(SHM_DIR, `banger-${createHash("sha256").update(root).digest("hex").slice(0, 12)}`),
  };
}

/** The host's tmpfs for shared memory: guest RAM there costs no disk I/O and can be copied sparsely. */
export const SHM_DIR = "/dev/shm";

/**
 * <memoryDir>/<id>.mem: where a QEMU VM's guest RAM lives while it runs (VmSpec.memoryFile),
 * so a snapshot can copy it. The VMM's cleanup removes it (vmm: the state file records it).
 */
export function vmMemoryFile(paths: Paths, id: string): string {
  return join(paths.memoryDir, `${id}.mem`);
}

/** Where `banger ssh-config` keeps its files: <root>/ssh/{config,known_hosts,id_ed25519}. */
export function sshPaths(paths: Paths): { dir: string; config: string; knownHosts: string; key: string } {
  const dir = paths.sshDir;
  return { dir, config: join(dir, "config"), knownHosts: join(dir, "known_hosts"), key: join(dir, "id_ed25519") };
}

/** <root>/vms/<name>: a VM's root disk and anything kept across boots. */
export function vmDir(paths: Paths, name: string): string {
  return join(paths.vmsDir, name);
}

/** <run>/vms/<id>: the VMM's sockets, pid and logs while it runs (by id: short, for socket paths). */
export function vmRuntimeDir(paths: Paths, id: string): string {
  return join(paths.runDir, "vms", id);
}

/**
 * <root>/snapshots/<name>: a snapshot's files, as the VMM and disk write them (vmstate: device
 * state; memory: guest RAM, sparse; the disk copy). Built in a staging directory beside it.
 */
export function snapshotDir(paths: Paths, name: string): string {
  return join(paths.snapshotsDir, name);
}

/** <root>/kernels/<name>: vmlinux, initrd.img, modules, manifest.json. */
export function kernelDir(paths: Paths, name: string): string {
  return join(paths.kernelsDir, name);
}

/** <root>/images/<name>: rootfs.ext4 and manifest.json. */
export function imageDir(paths: Paths, name: string): string {
  return join(paths.imagesDir, name);
}

/** <root>/images/<name>/rootfs.ext4: the disk every VM of that image is cloned from. */
export function imageRootfs(paths: Paths, name: string): string {
  return join(paths.imagesDir, name, "rootfs.ext4");
}

export function ensureDirs(paths: Paths): void {
  for (const dir of [paths.root, paths.runDir, paths.logsDir, paths.kernelsDir, paths.imagesDir, paths.vmsDir, paths.snapshotsDir, paths.cacheDir, paths.tmpDir]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
}

/**
 * What the user can set in config.json (and `banger config set`). Its keys stay snake_case,
 * unlike banger's JSON output (camelCase): they are a user-edited file format and the names
 * users type, so `config get --json` prints them as they are.
 */
export interface Config {
  kernel_catalog?: string;
  image_catalog?: string;
  default_kernel?: string;
  default_image?: string;
  insecure_registries?: string[];
  /** Which VMM runs VMs: "qemu" or "firecracker"; unset picks what the host can do. */
  vmm?: string;
  web?: { enabled?: boolean; port?: number; address?: string };
  /** The E2B-compatible API (e2b/): always on 127.0.0.1. */
  api?: { enabled?: boolean; port?: number };
  network?: { enabled?: boolean; subnet?: string; bridge?: string; tap_pool?: number };
  /** Resolvers the guests' DNS forwards to (validated by the daemon); unset: the host's resolv.conf. */
  dns?: { upstream?: string[] };
  /** Free space kept under the root: `vm create`/`start`/`resume` refuse below it, `doctor` fails. */
  min_free_bytes?: number;
  /** Warm pools: `max_memory`, the guest memory all pooled VMs together may hold (bytes). */
  pool?: { max_memory?: number };
  /** QEMU: `tcg_cache`, the TCG translation cache each VM may fill without KVM (bytes, whole MiB). */
  qemu?: { tcg_cache?: number };
  /** Snapshots: `standbys`, the QEMUs kept waiting for the next restore of the snapshots used last. */
  snapshot?: { standbys?: number };
}

export function minFreeBytes(config: Config): number {
  return config.min_free_bytes ?? DEFAULT_MIN_FREE_BYTES;
}

/** The cap on the guest memory all warm pools together hold (pool.max_memory). */
export function poolMaxMemory(config: Config): number {
  return config.pool?.max_memory ?? DEFAULT_POOL_MAX_MEMORY;
}

/** How many snapshots (the ones used last) keep a QEMU waiting for their next restore (snapshot.standbys). */
export function snapshotStandbys(config: Config): number {
  return checkStandbys(config.snapshot?.standbys ?? DEFAULT_STANDBYS);
}

/** The TCG translation cache each QEMU VM may fill, MiB (qemu.tcg_cache). */
export function tcgCacheMib(config: Config): number {
  return (config.qemu?.tcg_cache ?? DEFAULT_TCG_CACHE) / 1024 ** 2;
}

const STRING_KEYS = ["kernel_catalog", "image_catalog", "default_kernel", "default_image", "vmm"] as const;

/** Returns a copy of config with key set from its command-line text (undefined unsets). */
export function setConfigValue(config: Config, key: string, text: string | undefined): Config {
  getConfigValue(config, key); // validates the key
  const next = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
  const [head, sub] = key.split(".") as [string, string | undefined];
  const value = text === undefined ? undefined : parseConfigText(key, text);
  if (sub === undefined) {
    if (value === undefined) delete next[head];
    else next[head] = value;
  } else {
    const obj = { ...((next[head] as Record<string, unknown> | undefined) ?? {}) };
    if (value === undefined) delete obj[sub];
    else obj[sub] = value;
    next[head] = obj;
  }
  return parseConfig(JSON.stringify(next), "config");
}

export function parseConfig(text: string, source: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${source}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalidArgument(`${source}: expected a JSON object`);
  const obj = raw as Record<string, unknown>;
  for (const key of STRING_KEYS) {
    if (obj[key] !== undefined && typeof obj[key] !== "string") throw invalidArgument(`${source}: "${key}" must be a string`);
  }
  const insecure = obj.insecure_registries;
  if (insecure !== undefined && (!Array.isArray(insecure) || insecure.some((r) => typeof r !== "string"))) {
    throw invalidArgument(`${source}: "insecure_registries" must be a list of strings`);
  }
  const floor = obj.min_free_bytes;
  if (floor !== undefined && (typeof floor !== "number" || !Number.isSafeInteger(floor) || floor < 0)) {
    throw invalidArgument(`${source}: "min_free_bytes" must be a whole number of bytes`);
  }
  const pool = obj.pool;
  if (pool !== undefined && (typeof pool !== "object" || pool === null || Array.isArray(pool))) throw invalidArgument(`${source}: "pool" must be an object`);
  const poolCap = (pool as { max_memory?: unknown } | undefined)?.max_memory;
  if (poolCap !== undefined && (typeof poolCap !== "number" || !Number.isSafeInteger(poolCap) || poolCap < 0)) {
    throw invalidArgument(`${source}: "pool.max_memory" must be a whole number of bytes`);
  }
  for (const section of ["web", "api", "qemu", "snapshot"] as const) {
    const v = obj[section];
    if (v !== undefined && (typeof v !== "object" || v === null || Array.isArray(v))) throw invalidArgument(`${source}: "${section}" must be an object`);
  }
  const tcgCache = (obj.qemu as { tcg_cache?: unknown } | undefined)?.tcg_cache;
  if (tcgCache !== undefined) checkTcgCache(tcgCache, `${source}: "qemu.tcg_cache"`);
  const standbys = (obj.snapshot as { standbys?: unknown } | undefined)?.standbys;
  if (standbys !== undefined) checkStandbys(standbys, `${source}: "snapshot.standbys"`);
  return obj as Config;
}

export function loadConfig(paths: Paths): Config {
  let text: string;
  try {
    text = readFileSync(paths.configFile, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
  return parseConfig(text, paths.configFile);
}

export function saveConfig(paths: Paths, config: Config): void {
  mkdirSync(paths.root, { recursive: true, mode: 0o700 });
  const tmp = `${paths.configFile}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, paths.configFile);
}

/** Environment overrides win over the config file for catalogs (mirrors, tests). */
export function catalogOverride(kind: "kernel" | "image", config: Config, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return (effectiveValue(config, kind === "kernel" ? "kernel_catalog" : "image_catalog", env).value as string | null) ?? undefined;
}
