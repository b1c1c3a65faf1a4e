// Builds dist/banger.js (CLI), dist/bangerd.js (daemon) and dist/sdk.js (the SDK, `import
// { Banger } from "banger"`, its declarations in dist/types/) with esbuild, stamping version,
// git commit and build date, and dist/workers/<name>.js from every worker thread's module
// (src/<folder>/<name>-worker.ts); then the guest agent when Go is present.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, readdirSync, existsSync, renameSync, rmSync, writeFileSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));

function gitCommit() {
  try {
    const sha = execFileSync("git", ["-C", root, "rev-parse", "--short=12", "HEAD"], { stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
    const dirty =
      execFileSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { stdio: ["ignore", "pipe", "ignore"] })
        .toString()
        .trim() !== "";
    return dirty ? `${sha}-dirty` : sha;
  } catch {
    return "unknown";
  }
}

const define = {
  __BANGER_VERSION__: JSON.stringify(pkg.version),
  __BANGER_COMMIT__: JSON.stringify(gitCommit()),
  __BANGER_BUILD_DATE__: JSON.stringify(new Date().toISOString()),
};

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: "linked",
  define,
  // Native and optional-at-runtime modules stay outside the bundle.
  external: ["better-sqlite3"],
  banner: { js: "import { createRequire as __bangerCreateRequire } from 'node:module'; const require = __bangerCreateRequire(import.meta.url);" },
  logLevel: "warning",
};

// The dashboard's page (src/webui/app): one browser bundle, xterm.js included, so it works
// offline; served by bangerd from dist/webui.
async function buildDashboard(outdir) {
  await build({
    entryPoints: { app: `${root}src/webui/app/main.ts` },
    outdir,
    bundle: true,
    platform: "browser",
    format: "iife",
    target: "es2020",
    minify: true,
    logLevel: "warning",
  });
  copyFileSync(`${root}src/webui/app/index.html`, `${outdir}/index.html`);
}

// Worker threads run a file of their own (src/bundle/workers.ts finds it): each one is a
// self-contained entry point, no chunks shared with the CLI or the daemon.
function workerEntries(srcDir) {
  const entries = {};
  for (const file of readdirSync(srcDir, { recursive: true })) {
    const m = /(?:^|\/)([a-z0-9-]+)-worker\.ts$/.exec(file);
    if (!m) continue;
    if (entries[m[1]]) throw new Error(`two workers named ${m[1]}: ${entries[m[1]]} and ${file}`);
    entries[m[1]] = `${srcDir}/${file}`;
  }
  return entries;
}

// The SDK's declarations: tsc over src/sdk/index.ts (tsconfig.sdk.json) into <outdir>/types,
// then their relative imports named .js, not .ts, so a consumer's TypeScript reads them
// whatever its own settings (the sources import with .ts: CONTRIBUTING.md, Code).
function buildSdkTypes(outdir) {
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, "-p", `${root}tsconfig.sdk.json`, "--outDir", outdir], { stdio: "inherit" });
  for (const file of readdirSync(outdir, { recursive: true })) {
    if (!file.endsWith(".d.ts")) continue;
    const path = `${outdir}/${file}`;
    const text = readFileSync(path, "utf8");
    writeFileSync(path, text.replace(/(from\s+|import\()(["'])(\.{1,2}\/[^"']*?)\.ts\2/g, "$1$2$3.js$2"));
  }
}

// One build with code splitting: what only some commands use (make-bundle, the daemon's
// modules) sits in chunks loaded on demand, so `banger vm ls` parses little.
// Built beside dist/ and swapped in with renames, so a CLI or daemon starting meanwhile never
// sees a half-written tree (chunk names change with every build).
const next = `${root}dist.next-${process.pid}`;
const old = `${root}dist.old-${process.pid}`;
try {
  await build({
    ...common,
    entryPoints: { banger: `${root}src/cli/main.ts`, bangerd: `${root}src/daemon/main.ts`, sdk: `${root}src/sdk/index.ts` },
    outdir: next,
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
  });
  await build({ ...common, entryPoints: workerEntries(`${root}src`), outdir: `${next}/workers` });
  await buildDashboard(`${next}/webui`);
  buildSdkTypes(`${next}/types`);
  if (existsSync(`${root}dist`)) renameSync(`${root}dist`, old);
  renameSync(next, `${root}dist`);
} finally {
  rmSync(next, { recursive: true, force: true });
  rmSync(old, { recursive: true, force: true });
}

if (existsSync(`${root}agent/build.sh`)) {
  execFileSync("bash", [`${root}agent/build.sh`], { stdio: "inherit" });
}
