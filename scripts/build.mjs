// Builds dist/banger.js (CLI) and dist/bangerd.js (daemon) with esbuild, stamping
// version, git commit and build date; then the guest agent when Go is present.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));

function gitCommit() {
  try {
    const sha = execFileSync("git", ["-C", root, "rev-parse", "--short=12", "HEAD"], { stdio: ["ignore", "pipe", "ignore"] })
      .toString().trim();
    const dirty = execFileSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { stdio: ["ignore", "pipe", "ignore"] })
      .toString().trim() !== "";
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

// One build with code splitting: what only some commands use (make-bundle, the daemon's
// modules) sits in chunks loaded on demand, so `banger vm ls` parses little.
await build({
  ...common,
  entryPoints: { banger: `${root}src/cli/main.ts`, bangerd: `${root}src/daemon/main.ts` },
  outdir: `${root}dist`,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
});

if (existsSync(`${root}agent/build.sh`)) {
  execFileSync("bash", [`${root}agent/build.sh`], { stdio: "inherit" });
}
