// Runs every *.test.ts under src/ and test/ with node's test runner (TypeScript via tsx).
// Arguments narrow the run: `npm test -- src/rpc` runs the files under src/rpc only.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const roots = args.length > 0 ? args : ["src", "test"];

function collect(path, out) {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return out;
  if (st.isFile()) {
    if (path.endsWith(".test.ts")) out.push(path);
    return out;
  }
  for (const name of readdirSync(path).sort()) {
    if (name === "node_modules") continue;
    collect(join(path, name), out);
  }
  return out;
}

const files = roots.flatMap((r) => collect(join(root, r), [])).map((f) => relative(root, f));
if (files.length === 0) {
  console.error(`no test files under ${roots.join(", ")}`);
  process.exit(1);
}
// The whole suite (no arguments) typechecks and lints first (scripts/lint.mjs: Biome's format
// and lint checks, gofmt and go vet of the agent): a type error or a finding fails the run.
if (args.length === 0) {
  const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", root], { cwd: root, stdio: "inherit" });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
  const lint = spawnSync(process.execPath, [join(root, "scripts/lint.mjs")], { cwd: root, stdio: "inherit" });
  if (lint.status !== 0) process.exit(lint.status ?? 1);
}

// Tests run the built binaries (bin/banger, bin/bangerd), as users do: build first.
const build = spawnSync(process.execPath, [join(root, "scripts/build.mjs")], { cwd: root, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const result = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=600000", ...files], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, BANGER_REPO: root },
});
process.exit(result.status ?? 1);
