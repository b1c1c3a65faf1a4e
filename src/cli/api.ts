// `banger api`: the E2B-compatible API bangerd serves when api.enabled: `api env` prints the
// variables the official `e2b` SDK reads (eval it in a shell), `api key` prints or rotates the
// root's key.
import type { Command } from "commander";
import type { ApiState } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { callDaemon } from "./daemon-client.ts";
import { printJson } from "./output.ts";

/** A value as one single-quoted shell word. */
const shellWord = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function requireListening(state: ApiState): string {
  if (state.url) return state.url;
  if (state.error) throw new BangerError(ErrorCode.Unavailable, `the E2B API is enabled but not listening: ${state.error}`, "free the port, or: banger config set api.port N");
  throw new BangerError(ErrorCode.Unavailable, "the E2B API is off", "turn it on: banger config set api.enabled true");
}

export function registerApi(program: Command): void {
  const api = program.command("api").description("the E2B-compatible API (official `e2b` SDK) bangerd serves on 127.0.0.1 when api.enabled");
  api
    .command("env")
    .description('print `export` lines for E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY (eval "$(banger api env)")')
    .option("--json", "print JSON (apiUrl, sandboxUrl, apiKey)")
    .action(async (opts: { json?: boolean }) => {
      const info = await callDaemon("api.info");
      const url = requireListening(info);
      if (opts.json) return printJson({ apiUrl: url, sandboxUrl: url, apiKey: info.key });
      const vars: [string, string][] = [
        ["E2B_API_URL", url],
        ["E2B_SANDBOX_URL", url],
        ["E2B_API_KEY", info.key],
      ];
      process.stdout.write(vars.map(([k, v]) => `export ${k}=${shellWord(v)}\n`).join(""));
    });
  api
    .command("key")
    .description("print the API key (made on first use, kept 0600 under the root); --rotate replaces it at once")
    .option("--rotate", "make a new key: the old one stops working immediately")
    .option("--json", "print JSON ({ key })")
    .action(async (opts: { rotate?: boolean; json?: boolean }) => {
      const key = opts.rotate ? (await callDaemon("api.key.rotate")).key : (await callDaemon("api.info")).key;
      if (opts.json) return printJson({ key });
      process.stdout.write(`${key}\n`);
    });
}
