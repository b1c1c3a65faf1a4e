// `banger config get|set|unset`: the config file under the state root. The daemon reads it
// on each operation, so changes apply without a restart.
import type { Command } from "commander";
import { CONFIG_KEYS, getConfigValue, loadConfig, resolvePaths, saveConfig, setConfigValue } from "../config/index.ts";
import { printJson } from "./output.ts";

export function registerConfig(program: Command): void {
  const config = program
    .command("config")
    .description("read and change banger's configuration")
    .addHelpText("after", `\nKeys:\n${Object.entries(CONFIG_KEYS).map(([k, d]) => `  ${k.padEnd(20)} ${d}`).join("\n")}\n`);

  config
    .command("get")
    .description("print one key, or the whole configuration")
    .argument("[key]", "a config key")
    .option("--json", "print JSON")
    .action((key: string | undefined, opts: { json?: boolean }) => {
      const paths = resolvePaths();
      const cfg = loadConfig(paths);
      if (key === undefined) return printJson(cfg);
      const value = getConfigValue(cfg, key);
      if (opts.json) printJson(value ?? null);
      else process.stdout.write(`${value === undefined ? "" : Array.isArray(value) ? value.join(",") : String(value)}\n`);
    });

  config
    .command("set")
    .description("set one key")
    .argument("<key>", "a config key")
    .argument("<value>", "its value")
    .action((key: string, value: string) => {
      const paths = resolvePaths();
      saveConfig(paths, setConfigValue(loadConfig(paths), key, value));
    });

  config
    .command("unset")
    .description("remove one key (back to its default)")
    .argument("<key>", "a config key")
    .action((key: string) => {
      const paths = resolvePaths();
      saveConfig(paths, setConfigValue(loadConfig(paths), key, undefined));
    });
}
