// `banger config get|set|unset`: the config file under the state root, written here by the
// user running the CLI (root for the system root: the daemon's socket users cannot change
// it). `set` checks a value by its key's type, and kernel and image names against what the
// daemon has, then says when the change applies: at once (the daemon reads the file per
// operation), the dashboard or the E2B API restarted in place (web.*, api.*: the daemon's web.reload, api.reload), or at the
// daemon's next start (network.*). `get` prints the value in effect and where it comes from.
import type { Command } from "commander";
import {
  CONFIG_KEY_SPECS,
  CONFIG_KEYS,
  DEFAULT_WEB_PORT,
  effectiveValue,
  keySpec,
  loadConfig,
  resolvePaths,
  saveConfig,
  setConfigValue,
  type Config,
  type EffectiveValue,
  type KeySpec,
  type Paths,
} from "../config/index.ts";
import type { Methods } from "../api/index.ts";
import { RpcClient } from "../rpc/index.ts";
import { errorLine, invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { inert } from "../util/text.ts";
import { callDaemon } from "./daemon-client.ts";
import { printJson, printTable } from "./output.ts";

const EXAMPLES = `
Examples:
  banger config get                          every key, its value in effect and where it comes from
  banger config get default_image --json     {"key":"default_image","value":"busybox","source":"config"}
  banger config set default_kernel debian-6.1-cloud   refused unless that kernel exists
  banger config set web.enabled true         starts the dashboard now (port ${DEFAULT_WEB_PORT} unless web.port says)
  banger config set min_free_bytes 2G        sizes take K/M/G/T
  banger config set qemu.tcg_cache 128M      QEMU without KVM: a bigger translation cache per VM
  banger config unset network.subnet         back to the default (applies when the daemon restarts)
`;

export function registerConfig(program: Command): void {
  const config = program
    .command("config")
    .description("read and change banger's configuration (<root>/config.json)")
    .addHelpText(
      "after",
      `\nKeys (environment variables of the daemon win over the file):\n${Object.entries(CONFIG_KEYS)
        .map(([k, d]) => `  ${k.padEnd(20)} ${d}${envNote(CONFIG_KEY_SPECS[k]!)}`)
        .join("\n")}\n${EXAMPLES}`,
    );

  config
    .command("get")
    .description("print a key's value in effect and its source (default, config file, env var); without a key, all of them")
    .argument("[key]", "a config key")
    .option("--json", "print JSON: {key, value, source, env?, only?} (a list without a key)")
    .action(async (key: string | undefined, opts: { json?: boolean }) => {
      const paths = resolvePaths();
      const cfg = loadConfig(paths);
      if (key !== undefined) {
        const e = await withOnlyOne(paths, effectiveValue(cfg, key));
        if (opts.json) return printJson(e);
        return void process.stdout.write(`${inert(showValue(e.value, e.key))} (${sourceText(e)})\n`);
      }
      const all = await Promise.all(Object.keys(CONFIG_KEY_SPECS).map((k) => withOnlyOne(paths, effectiveValue(cfg, k))));
      if (opts.json) return printJson(all);
      printTable(
        ["KEY", "VALUE", "SOURCE"],
        all.map((e) => [e.key, e.value === null ? null : showValue(e.value, e.key), sourceText(e)]),
      );
    });

  config
    .command("set")
    .description("set one key: checked by type (names must exist), then applied at once where it can be")
    .argument("<key>", "a config key")
    .argument("<value>", "its value")
    .action((key: string, value: string) => changeKey(key, value));

  config
    .command("unset")
    .description("remove one key (back to its default)")
    .argument("<key>", "a config key")
    .action((key: string) => changeKey(key, undefined));
}

/**
 * An unset default_kernel/default_image is in effect the only kernel/image there is: asked
 * of the daemon when one runs (none is started just to answer `config get`).
 */
async function withOnlyOne(paths: Paths, e: EffectiveValue): Promise<EffectiveValue & { only?: true }> {
  if (e.value !== null || (e.key !== "default_kernel" && e.key !== "default_image")) return e;
  const client = await RpcClient.connect<Methods>(paths.socket).catch(() => undefined);
  if (!client) return e;
  try {
    const names = (await client.call(e.key === "default_kernel" ? "kernel.list" : "image.list")).map((r) => r.name);
    return names.length === 1 ? { ...e, value: names[0], only: true } : e;
  } catch {
    return e;
  } finally {
    client.close();
  }
}

function envNote(spec: KeySpec): string {
  return spec.env ? ` [${spec.env.name}]` : "";
}

/** A value as text; sizes human (`--json` keeps bytes). */
function showValue(v: unknown, key?: string): string {
  if (v === null || v === undefined) return "unset";
  if ((key === "min_free_bytes" || key === "qemu.tcg_cache") && typeof v === "number") return humanBytes(v);
  if (Array.isArray(v)) return v.length ? v.join(",") : "none";
  return String(v);
}

function sourceText(e: EffectiveValue & { only?: true }): string {
  if (e.only) return `default: the only ${e.key === "default_kernel" ? "kernel" : "image"}`;
  if (e.source === "env") return `env ${e.env}`;
  if (e.source === "config") return "config file";
  const unset = e.value === null ? keySpec(e.key).unset : undefined;
  return unset ? `default: ${unset}` : "default";
}

async function changeKey(key: string, text: string | undefined): Promise<void> {
  const paths = resolvePaths();
  const spec = keySpec(key);
  const next = setConfigValue(loadConfig(paths), key, text);
  if (text !== undefined && (key === "default_kernel" || key === "default_image")) await checkExists(key === "default_kernel" ? "kernel" : "image", key, text);
  if (key.startsWith("network.") || key.startsWith("dns.")) await checkNetwork(next);
  saveConfig(paths, next);
  const e = effectiveValue(next, key);
  if (e.source === "env") process.stderr.write(`banger: ${e.env} is set in this environment and wins over the file (a daemon started from here uses ${inert(showValue(e.value))})\n`);
  await applyChange(paths, key, spec);
}

/** A default kernel or image must exist: refused with one line naming those there are. */
async function checkExists(kind: "kernel" | "image", key: string, name: string): Promise<void> {
  const names = (await callDaemon(`${kind}.list`)).map((r) => r.name);
  if (names.includes(name)) return;
  const make = kind === "kernel" ? "banger kernel import --debian" : "banger image build --preset busybox";
  const there = names.length ? `${kind}s here: ${names.join(", ")}` : `there are no ${kind}s yet: ${make}`;
  throw invalidArgument(`${key}: no ${kind} ${name}`, there);
}

/** The daemon would refuse to start on a bad network or DNS setting: refused here instead. */
async function checkNetwork(next: Config): Promise<void> {
  const { parseSubnet, parseUpstream, validateIfname } = await import("../net/index.ts");
  if (next.network?.subnet !== undefined) parseSubnet(next.network.subnet);
  if (next.network?.bridge !== undefined) validateIfname(next.network.bridge, "network.bridge");
  for (const upstream of next.dns?.upstream ?? []) parseUpstream(upstream);
}

/** Says when the change takes effect, applying the dashboard's and the E2B API's at once when a daemon runs. */
async function applyChange(paths: Paths, key: string, spec: KeySpec): Promise<void> {
  if (spec.applies === "live") return;
  const client = await RpcClient.connect<Methods>(paths.socket).catch(() => undefined);
  if (!client) return; // the next daemon reads it when it starts
  try {
    if (spec.applies === "restart") {
      process.stderr.write(`banger: ${key} applies when the daemon restarts: banger daemon stop (running VMs keep running; the next command starts it)\n`);
      return;
    }
    const what = spec.applies === "api" ? "E2B API" : "dashboard";
    const state = await client.call(spec.applies === "api" ? "api.reload" : "web.reload").catch((err: unknown) => {
      process.stderr.write(`banger: the running daemon could not apply ${key} (${inert(errorLine(err))}): banger daemon stop, and the next command starts one that does\n`);
      return undefined;
    });
    if (!state) return;
    if (state.url) process.stdout.write(spec.applies === "api" ? `E2B API on ${state.url} (banger api env)\n` : `dashboard on ${state.url} (banger web for a login link)\n`);
    else if (state.error) process.stderr.write(`banger: the ${what} is enabled but not listening: ${inert(state.error)}\n`);
    else process.stdout.write(`${what} off\n`);
  } finally {
    client.close();
  }
}
