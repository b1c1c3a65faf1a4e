// Starts this folder's worker threads from their own modules (`<name>-worker.ts`), which the
// typechecker sees like any other. A build runs the files scripts/build.mjs makes of them,
// dist/workers/<name>.js (found beside the bundle, or one up from its chunks/). Run from the
// sources (tsx: the tests), the module is compiled here with esbuild, a dev dependency like
// tsx, once per process: Node 20 does not give a worker the parent's tsx hooks, and tsx
// started anew in every worker made each pull's start seconds slower on a busy host.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";
import { BangerError, ErrorCode } from "../util/errors.ts";

export type WorkerName = "feeder" | "unpacker";

const fromSources = import.meta.url.endsWith(".ts");
const compiled = new Map<WorkerName, string>();

export function startWorker(name: WorkerName, options: Omit<WorkerOptions, "eval" | "execArgv">): Worker {
  // execArgv: [] so flags of the parent (tsx's --import) are not applied again in the worker.
  if (fromSources) return new Worker(compiledFromSources(name), { ...options, eval: true, execArgv: [] });
  return new Worker(builtWorker(name), { ...options, execArgv: [] });
}

/** dist/workers/<name>.js seen from the bundle (dist/*.js or dist/chunks/*.js). */
function builtWorker(name: WorkerName): URL {
  const candidates = [new URL(`./workers/${name}.js`, import.meta.url), new URL(`../workers/${name}.js`, import.meta.url)];
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new BangerError(ErrorCode.MissingDependency, `worker ${name}.js is missing beside ${fileURLToPath(import.meta.url)}`, "rebuild: `bash scripts/setup.sh` in the repository");
  }
  return found;
}

/** `<name>-worker.ts` as one CommonJS script (what an eval worker runs), built as scripts/build.mjs builds it. */
function compiledFromSources(name: WorkerName): string {
  let code = compiled.get(name);
  if (code === undefined) {
    const esbuild = createRequire(import.meta.url)("esbuild") as typeof import("esbuild");
    const out = esbuild.buildSync({
      entryPoints: [fileURLToPath(new URL(`./${name}-worker.ts`, import.meta.url))],
      bundle: true,
      write: false,
      platform: "node",
      target: "node20",
      format: "cjs",
      logLevel: "warning",
    });
    code = out.outputFiles[0]!.text;
    compiled.set(name, code);
  }
  return code;
}
