// The daemon as users meet it: started by the CLI, one per root, stopped by SIGTERM or
// `banger daemon stop`, replaced cleanly after a crash or by a CLI of another build.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { isAlive, makeTempHome, runBanger, runBin, stopDaemon } from "./helpers.ts";

const pidOf = (home: string) => Number.parseInt(readFileSync(join(home, "run", "bangerd.pid"), "utf8"), 10);
const socketOf = (home: string) => join(home, "run", "bangerd.sock");

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Live bangerd processes whose BANGER_HOME is `home`. */
function daemonsFor(home: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const environ = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (cmdline.includes("bangerd") && environ.includes(`BANGER_HOME=${home}`) && isAlive(Number(entry))) found.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

describe("daemon", () => {
  it("is started by the CLI when nothing answers, with a private socket", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      assert.equal(existsSync(socketOf(home)), false);
      const ls = await runBanger(["vm", "ls", "--json"], { home });
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(JSON.parse(ls.stdout), []);
      assert.equal(statSync(socketOf(home)).mode & 0o777, 0o600);
      const status = await runBanger(["daemon", "status", "--json"], { home });
      const s = JSON.parse(status.stdout);
      assert.equal(s.running, true);
      assert.equal(s.root, home);
      assert.equal(s.pid, pidOf(home));
      const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      assert.ok(
        log.some((e) => e.msg === "bangerd ready" && e.pid === s.pid),
        "the log is structured JSON with a ready line",
      );
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("refuses a second daemon on the same root with a clear message", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      await runBanger(["daemon", "start"], { home });
      const first = pidOf(home);
      const second = await runBin("bangerd", ["--foreground"], { home });
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`another bangerd \\(pid ${first}\\) is already running for ${home}`));
      assert.ok(isAlive(first), "the first daemon is untouched");
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("starts exactly one daemon when many CLIs race to start it, and none comes back after a stop", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      const results = await Promise.all(Array.from({ length: 8 }, () => runBanger(["vm", "ls", "--json"], { home })));
      for (const r of results) assert.equal(r.code, 0, r.stderr);
      const status = JSON.parse((await runBanger(["daemon", "status", "--json"], { home })).stdout);
      assert.ok(isAlive(status.pid));
      // Stopped at once: a racing CLI's spawn that started slowly used to take the root
      // over right after the winner stopped.
      await stopDaemon(home);
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(daemonsFor(home), [], "no daemon runs for this root after the stop");
      const readyLines = readFileSync(join(home, "logs", "bangerd.log"), "utf8")
        .split("\n")
        .filter((l) => l.includes('"bangerd ready"'));
      assert.equal(readyLines.length, 1, "only one daemon ever became ready");
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("shuts down on SIGTERM and removes its socket", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      await runBanger(["daemon", "start"], { home });
      const pid = pidOf(home);
      process.kill(pid, "SIGTERM");
      await waitUntil(() => !isAlive(pid));
      assert.equal(existsSync(socketOf(home)), false);
      assert.equal(existsSync(join(home, "run", "bangerd.pid")), false);
      assert.match(readFileSync(join(home, "logs", "bangerd.log"), "utf8"), /"msg":"bangerd stopped"/);
    } finally {
      cleanup();
    }
  });

  it("is stopped by `banger daemon stop`", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      await runBanger(["daemon", "start"], { home });
      const pid = pidOf(home);
      const stop = await runBanger(["daemon", "stop", "--json"], { home });
      assert.equal(stop.code, 0, stop.stderr);
      assert.deepEqual(JSON.parse(stop.stdout), { stopped: true, pid });
      await waitUntil(() => !isAlive(pid));
      const status = await runBanger(["daemon", "status"], { home });
      assert.equal(status.code, 1);
      assert.match(status.stdout, /not running/);
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("replaces the stale socket left by a killed daemon", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      await runBanger(["daemon", "start"], { home });
      const pid = pidOf(home);
      process.kill(pid, "SIGKILL");
      await waitUntil(() => !isAlive(pid));
      assert.equal(existsSync(socketOf(home)), true, "SIGKILL leaves the socket file behind");
      const ls = await runBanger(["vm", "ls", "--json"], { home });
      assert.equal(ls.code, 0, ls.stderr);
      const fresh = pidOf(home);
      assert.notEqual(fresh, pid);
      assert.ok(isAlive(fresh));
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("is replaced, when idle, by a CLI of another build (an upgrade or a rebuild)", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      await runBanger(["daemon", "start"], { home });
      const pid = pidOf(home);
      const buildFile = join(home, "run", "bangerd.build");
      const ours = readFileSync(buildFile, "utf8").trim();
      const version = (await runBanger(["--version"], { home })).stdout;
      for (const part of ours.split(" ")) assert.ok(version.includes(part), `the build file names this build: ${ours} vs ${version}`);
      writeFileSync(buildFile, "0.0.1 0000000 2020-01-01T00:00:00.000Z\n"); // as an older daemon would have written

      const ls = await runBanger(["vm", "ls", "--json"], { home });
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(JSON.parse(ls.stdout), []);
      assert.match(ls.stderr, /^banger: restarted bangerd, which ran another build \(0\.0\.1 0000000 2020-01-01T00:00:00\.000Z\)\n$/);
      assert.equal(isAlive(pid), false, "the old daemon is gone");
      assert.notEqual(pidOf(home), pid);
      assert.equal(readFileSync(buildFile, "utf8").trim(), ours);

      const again = await runBanger(["vm", "ls"], { home });
      assert.equal(again.stderr, "", "the same build is left alone");
    } finally {
      await stopDaemon(home);
      cleanup();
    }
  });

  it("leaves a busy daemon of another build alone, with a note", async () => {
    const { home, cleanup } = makeTempHome();
    // A kernel catalog whose bundle never arrives: a pull of it stays in flight.
    let requests = 0;
    const stall = createServer(() => void requests++); // never answers
    stall.listen(0, "127.0.0.1");
    await once(stall, "listening");
    const url = `http://127.0.0.1:${(stall.address() as AddressInfo).port}/k.tar.zst`;
    const catalog = join(home, "catalog.json");
    writeFileSync(
      catalog,
      JSON.stringify({
        version: 1,
        entries: [{ name: "slow", distro: "test", arch: "x86_64", kernel_version: "6.1", tarball_url: url, tarball_sha256: "a".repeat(64), size_bytes: 1000, description: "never arrives" }],
      }),
    );
    const env = { BANGER_KERNEL_CATALOG: catalog };
    try {
      await runBanger(["daemon", "start"], { home, env });
      const pid = pidOf(home);
      const pull = runBanger(["kernel", "pull", "slow"], { home, env, timeoutMs: 60_000 });
      await waitUntil(() => requests > 0, 20_000); // the pull is in flight, waiting for its bundle
      writeFileSync(join(home, "run", "bangerd.build"), "0.0.1 0000000 2020-01-01T00:00:00.000Z\n");
      const ls = await runBanger(["vm", "ls"], { home, env });
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stderr, /^banger: bangerd runs another build \(0\.0\.1 0000000 2020-01-01T00:00:00\.000Z\) and is busy; restart it when idle: banger daemon stop\n$/);
      assert.equal(pidOf(home), pid, "the busy daemon keeps running");
      await stopDaemon(home);
      assert.notEqual((await pull).code, 0, "the pull ends with its daemon");
    } finally {
      stall.closeAllConnections?.();
      stall.close();
      await stopDaemon(home);
      cleanup();
    }
  });
});
