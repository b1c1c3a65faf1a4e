// Package config owns where banger keeps things and what the user configured.
//
// Every path banger writes to is derived here from one state root: $BANGER_HOME when set
// (tests always set it), else /var/lib/banger with sockets under /run/banger. The config
// file is <root>/config.json. This module reads and writes only that file; the directories
// it names belong to the modules that fill them (store, bundle, vmm, ...).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { NAME_PATTERN } from "../util/names.ts";
import { parseSize } from "../util/size.ts";

export interface Paths {
  root: string;
  /** Sockets and pid files: <root>/run, or /run/banger for the system root. */
  runDir: string;
  socket: string;
  lockFile: string;
  db: string;
  logsDir: string;
  daemonLog: string;
  configFile: string;
  kernelsDir: string;
  imagesDir: string;
  vmsDir: string;
  /** Content-addressed downloads (bundles by sha256, OCI blobs by digest). */
  cacheDir: string;
  /** Scratch space on the same filesystem as the stores, so publishing is a rename. */
  tmpDir: string;
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
    lockFile: join(root, "bangerd.lock"),
    db: join(root, "banger.db"),
    logsDir: join(root, "logs"),
    daemonLog: join(root, "logs", "bangerd.log"),
    configFile: join(root, "config.json"),
    kernelsDir: join(root, "kernels"),
    imagesDir: join(root, "images"),
    vmsDir: join(root, "vms"),
    cacheDir: join(root, "cache"),
    tmpDir: join(root, "tmp"),
  };
}

export function ensureDirs(paths: Paths): void {
  for (const dir of [paths.root, paths.runDir, paths.logsDir, paths.kernelsDir, paths.imagesDir, paths.vmsDir, paths.cacheDir, paths.tmpDir]) {
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
  network?: { enabled?: boolean; subnet?: string; bridge?: string; tap_pool?: number };
  /** Free space kept under the root: `vm create`/`start`/`resume` refuse below it, `doctor` fails. */
  min_free_bytes?: number;
}

/** The free-space floor when none is configured: 1 GiB (a fixed size, not a share of the disk). */
export const DEFAULT_MIN_FREE_BYTES = 1024 ** 3;

export function minFreeBytes(config: Config): number {
  return config.min_free_bytes ?? DEFAULT_MIN_FREE_BYTES;
}

const STRING_KEYS = ["kernel_catalog", "image_catalog", "default_kernel", "default_image", "vmm"] as const;

/** The keys `banger config get|set` knows, with what each one means. */
export const CONFIG_KEYS: Record<string, string> = {
  default_kernel: "kernel used when a VM or image names none",
  default_image: "image used by `vm run` / `vm create` without --image",
  kernel_catalog: "path or URL of a kernel catalog.json replacing the embedded one",
  image_catalog: "path or URL of an image catalog.json replacing the embedded one",
  vmm: "qemu or firecracker (unset: firecracker when usable, else qemu)",
  insecure_registries: "comma-separated registries that may be reached over plain HTTP",
  "web.enabled": "serve the dashboard (true/false)",
  "web.port": "dashboard port on 127.0.0.1",
  "web.address": "dashboard listen address (non-loopback needs care)",
  "network.enabled": "VM networking (bridge, NAT, DNS): default on for the system root, off under $BANGER_HOME",
  "network.subnet": "the VMs' /24 (default: one inside 172.16.0.0/12 that no route uses)",
  "network.bridge": "bridge name (default banger0)",
  "network.tap_pool": "taps kept ready for new VMs (default 2)",
  min_free_bytes: "free space kept under the root, e.g. 2G: vm create/start/resume refuse below it (default 1G)",
};

/** Reads one key (dotted for nested ones) from a config. */
export function getConfigValue(config: Config, key: string): unknown {
  if (!(key in CONFIG_KEYS)) throw invalidArgument(`unknown config key ${JSON.stringify(key)}`, `known keys: ${Object.keys(CONFIG_KEYS).join(", ")}`);
  const [head, sub] = key.split(".");
  const v = (config as Record<string, unknown>)[head!];
  return sub === undefined ? v : (v as Record<string, unknown> | undefined)?.[sub];
}

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

function parseConfigText(key: string, text: string): unknown {
  switch (key) {
    case "insecure_registries":
      return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    case "web.enabled":
    case "network.enabled":
      if (text !== "true" && text !== "false") throw invalidArgument(`${key} takes true or false`);
      return text === "true";
    case "network.tap_pool": {
      const n = Number(text);
      if (!Number.isInteger(n) || n < 0 || n > 64) throw invalidArgument(`${key} takes a whole number from 0 to 64`);
      return n;
    }
    case "web.port": {
      const n = Number(text);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalidArgument(`${key} takes a port number from 1 to 65535`);
      return n;
    }
    case "min_free_bytes":
      return parseSize(text, key);
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
  const web = obj.web;
  if (web !== undefined && (typeof web !== "object" || web === null || Array.isArray(web))) {
    throw invalidArgument(`${source}: "web" must be an object`);
  }
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
  const fromEnv = kind === "kernel" ? env.BANGER_KERNEL_CATALOG : env.BANGER_IMAGE_CATALOG;
  if (fromEnv) return fromEnv;
  return kind === "kernel" ? config.kernel_catalog : config.image_catalog;
}
