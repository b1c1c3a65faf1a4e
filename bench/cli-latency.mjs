// Issue 2's numbers: median wall time of `banger --version` and `banger vm ls` (against a
// running daemon) as ratios to `node -e 0`, measured in the same run with hyperfine.
// Target: `banger vm ls` under 3x `node -e 0`.   Run: node bench/cli-latency.mjs
// bin/banger starts Node without NODE_EXTRA_CA_CERTS (Node parses that bundle at every start;
// the CLI makes no TLS connection): where it is set, the ratio is to `node -e 0` started the
// same way, and `node -e 0` with it is printed beside.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const repo = new URL("..", import.meta.url).pathname;
const home = mkdtempSync(join(tmpdir(), "bgr-bench-"));
const env = { ...process.env, BANGER_HOME: home };
const banger = join(repo, "bin/banger");
const out = join(home, "hyperfine.json");
const caCerts = process.env.NODE_EXTRA_CA_CERTS !== undefined;

try {
  execFileSync(banger, ["daemon", "start"], { env, stdio: "inherit" });
  execFileSync(
    "hyperfine",
    [
      "-N",
      "--warmup",
      "5",
      "--runs",
      "40",
      "--export-json",
      out,
      ...(caCerts ? ["-n", "node -e 0 (NODE_EXTRA_CA_CERTS set)", "node -e 0"] : []),
      "-n",
      "node -e 0",
      caCerts ? "env -u NODE_EXTRA_CA_CERTS node -e 0" : "node -e 0",
      "-n",
      "banger --version",
      `${banger} --version`,
      "-n",
      "banger vm ls",
      `${banger} vm ls`,
    ],
    { env, stdio: ["ignore", "ignore", "inherit"] },
  );
  const results = JSON.parse(readFileSync(out, "utf8")).results;
  const median = Object.fromEntries(results.map((r) => [r.command, r.median * 1000]));
  const base = median["node -e 0"];
  for (const [name, ms] of Object.entries(median)) {
    console.log(`${name.padEnd(18)} median ${ms.toFixed(1).padStart(6)} ms   ratio to node -e 0: ${(ms / base).toFixed(2)}x`);
  }
  const ratio = median["banger vm ls"] / base;
  console.log(`target: banger vm ls < 3x node -e 0 -> ${ratio < 3 ? "met" : "NOT met"} (${ratio.toFixed(2)}x)`);
} finally {
  try {
    execFileSync(banger, ["daemon", "stop"], { env, stdio: "ignore" });
  } catch {
    /* already stopped */
  }
  rmSync(home, { recursive: true, force: true });
}
