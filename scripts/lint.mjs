// The code checks `npm test` runs before the tests (and `npm run lint` alone): Biome (format
// and lint, biome.jsonc) over the TypeScript/JavaScript, gofmt and go vet over the guest agent.
// `--write` (`npm run format`) rewrites instead: Biome's formatter and gofmt.
// Exits non-zero on any finding, saying which command fixes it, and when Go is missing
// (BANGER_SKIP_GO_LINT=1 skips the agent's checks instead).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const agent = join(root, "agent");
const write = process.argv.includes("--write");
const biome = join(root, "node_modules/@biomejs/biome/bin/biome");
// Escape codes make a CI log unreadable: colour only on a terminal.
const colors = process.stdout.isTTY ? [] : ["--colors=off"];
// The environment agent/build.sh builds with: caches under agent/ (works as root with HOME
// unset), no cgo, no downloads (standard library only).
const goEnv = {
  ...process.env,
  GOCACHE: join(agent, ".gocache", "build"),
  GOPATH: join(agent, ".gocache", "gopath"),
  GOFLAGS: "-trimpath",
  GOPROXY: "off",
  GOTOOLCHAIN: "local",
  CGO_ENABLED: "0",
  GO111MODULE: "on",
  GOOS: "linux",
};

const failures = [];
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"], ...opts });
  if (r.error) return { ok: false, why: r.error.message };
  return { ok: r.status === 0, stdout: r.stdout?.toString() ?? "" };
}
const hasGo = spawnSync("go", ["version"], { stdio: "ignore" }).status === 0;
// Without Go the agent's checks cannot run: that fails, as any check that cannot run would,
// unless BANGER_SKIP_GO_LINT=1 says to skip them on purpose (a host that only runs the TypeScript).
const skipGo = process.env.BANGER_SKIP_GO_LINT === "1";
const goChecks = hasGo && !skipGo;
if (skipGo) console.log("lint: BANGER_SKIP_GO_LINT=1: gofmt and go vet of agent/ skipped");
else if (!hasGo) {
  failures.push("the Go toolchain is missing, so gofmt and go vet of agent/ cannot run: apt-get install -y golang-go (or BANGER_SKIP_GO_LINT=1 to skip them)");
}
// The agent's own Go files: not the build caches (.gocache) or the fuzz corpora.
function goFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name.startsWith(".") || e.name === "testdata" || e.name === "dist") return [];
    const path = join(dir, e.name);
    if (e.isDirectory()) return goFiles(path);
    return e.name.endsWith(".go") ? [relative(root, path)] : [];
  });
}

if (write) {
  if (!run(process.execPath, [biome, "format", "--write", ...colors, root]).ok) failures.push("biome format --write failed (a file it cannot parse?)");
  if (goChecks && !run("gofmt", ["-w", ...goFiles(agent)]).ok) failures.push("gofmt -w failed in agent/");
} else {
  if (!run(process.execPath, [biome, "ci", "--error-on-warnings", ...colors, root]).ok) {
    failures.push("biome ci: run `npm run format` for formatting; fix lint findings by hand (`npx biome lint --write` applies Biome's safe fixes)");
  }
  if (goChecks) {
    const fmt = run("gofmt", ["-l", ...goFiles(agent)], { stdio: ["ignore", "pipe", "inherit"] });
    if (!fmt.ok || fmt.stdout.trim() !== "") {
      if (fmt.stdout.trim()) console.error(`gofmt: not formatted:\n${fmt.stdout.trim()}`);
      failures.push("gofmt: run `npm run format` (or gofmt -w agent/*.go)");
    }
    // Vet both targets: sys_amd64.go and sys_arm64.go differ by architecture.
    for (const arch of ["amd64", "arm64"]) {
      if (!run("go", ["vet", "./..."], { cwd: agent, env: { ...goEnv, GOARCH: arch } }).ok) failures.push(`go vet (GOARCH=${arch}) in agent/: fix the findings above by hand`);
    }
  }
}

if (failures.length > 0) {
  for (const f of failures) console.error(`lint: ${f}`);
  process.exit(1);
}
