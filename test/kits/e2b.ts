// A real bangerd serving the E2B-compatible API for tests that drive it with the official `e2b`
// SDK: a temporary BANGER_HOME with the test kernel and the busybox image (prepareBootableHome,
// as other e2e tests), busybox as the default image (the SDK's "base"), the API on a free
// loopback port (BANGER_API=1, BANGER_API_PORT=0). Boots VMs: run the test under the VM lock.
import type { CliResult } from "../helpers.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

export interface E2bTestBed {
  home: string;
  /** The environment banger commands of this root run with. */
  bangerEnv: NodeJS.ProcessEnv;
  /** What `banger api env` exports. */
  env: { E2B_API_URL: string; E2B_SANDBOX_URL: string; E2B_API_KEY: string };
  /** Connection options for Sandbox.create / connect / list (no process-wide env needed). */
  opts: { apiUrl: string; sandboxUrl: string; apiKey: string; requestTimeoutMs: number };
  /** The image sandboxes are made from ("base" is the same image). */
  image: string;
  banger(args: string[]): Promise<CliResult>;
  /** Removes every VM, stops the daemon, removes the home. */
  cleanup(): Promise<void>;
}

/** VM boots under TCG can take a while: the SDK's 60 s default is too short here. */
const REQUEST_TIMEOUT_MS = 300_000;

export async function startE2bTestBed(extraEnv: NodeJS.ProcessEnv = {}): Promise<E2bTestBed> {
  const { home, cleanup: removeHome } = makeTempHome();
  let bangerEnv: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env: bangerEnv, cwd: home });
  try {
    const prepared = await prepareBootableHome(home, { BANGER_API: "1", BANGER_API_PORT: "0", ...extraEnv });
    bangerEnv = prepared.env;
    await mustRun(banger(["config", "set", "default_image", prepared.image]));
    const info = JSON.parse((await mustRun(banger(["api", "env", "--json"]))).stdout) as { apiUrl: string; sandboxUrl: string; apiKey: string };
    return {
      home,
      bangerEnv,
      env: { E2B_API_URL: info.apiUrl, E2B_SANDBOX_URL: info.sandboxUrl, E2B_API_KEY: info.apiKey },
      opts: { apiUrl: info.apiUrl, sandboxUrl: info.sandboxUrl, apiKey: info.apiKey, requestTimeoutMs: REQUEST_TIMEOUT_MS },
      image: prepared.image,
      banger,
      cleanup: async () => {
        await removeAllVms(banger);
        await stopDaemon(home);
        removeHome();
      },
    };
  } catch (err) {
    await removeAllVms(banger).catch(() => undefined);
    await stopDaemon(home);
    removeHome();
    throw err;
  }
}

async function removeAllVms(banger: (args: string[]) => Promise<CliResult>): Promise<void> {
  const ls = await banger(["vm", "ls", "--json"]);
  if (ls.code !== 0) return;
  for (const v of JSON.parse(ls.stdout || "[]") as { name: string }[]) await banger(["vm", "rm", "-f", v.name]);
}
