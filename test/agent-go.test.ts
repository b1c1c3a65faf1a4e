// The guest agent's own Go tests, run as part of `npm test`: unit tests, and the fuzz
// targets' seed corpora (agent/testdata/fuzz/<Name>/), which `go test` runs as plain tests.
// Offline and with the caches agent/build.sh uses; skipped (saying why) only without Go.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { which } from "../src/util/exec.ts";
import { REPO } from "./helpers.ts";

const AGENT = join(REPO, "agent");

test("the agent's Go tests and fuzz seed corpora pass", { skip: which("go") ? false : "the Go toolchain is missing (apt-get install -y golang-go)", timeout: 120_000 }, async () => {
  const env = {
    ...process.env,
    GOCACHE: join(AGENT, ".gocache", "build"),
    GOPATH: join(AGENT, ".gocache", "gopath"),
    GOFLAGS: "-trimpath",
    GOPROXY: "off", // standard library only: nothing to download
    GOTOOLCHAIN: "local",
    CGO_ENABLED: "0",
    GO111MODULE: "on",
  };
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn("go", ["test", "-count=1", "./..."], { cwd: AGENT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
  assert.equal(code, 0, `go test ./... failed in agent/:\n${output}`);
  assert.match(output, /^ok\s+\S+/m);
});
