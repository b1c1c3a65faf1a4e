// Parsers for command-line values shared by several commands.
import { invalidArgument } from "../util/errors.ts";

/** `-e KEY=VALUE` pairs as an environment map. */
export function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of pairs) {
    const i = kv.indexOf("=");
    if (i <= 0) throw invalidArgument(`--env takes KEY=VALUE, not ${JSON.stringify(kv)}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}
