// The console log cap, through the real driver path: a process that writes its "console" the
// way QEMU and Firecracker do (one O_APPEND descriptor, as fast as a busy guest) is adopted as
// a qemu VMM, and the log stays bounded while it floods. (No VM boots here: a guest's serial
// console is slower than this writer, so this is the harder case.)
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { makeTempHome } from "../../test/helpers.ts";
import { watchConsoleLog } from "./console.ts";
import { CONSOLE_LOG_CAP, adoptVm, consoleLogPath, readConsoleFrom, readConsoleTail } from "./index.ts";

const { home, cleanup } = makeTempHome();
after(cleanup);

/** ~6.4 MB/s of numbered lines to console.log through one O_APPEND fd, until killed. Its argv names the runtime dir. */
const FLOODER = `
const fs = require("node:fs");
const fd = fs.openSync(process.argv[1] + "/console.log", "a");
let n = 0;
setInterval(() => { let s = ""; while (s.length < 65536) s += "line " + n++ + " of a guest that never stops talking\\n"; fs.writeSync(fd, s); }, 10);
`;

const sizeOf = (p: string) => {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
};

test("a VMM flooding its console: the log stays under the cap plus one check's worth, older output rotates to console.log.1", async () => {
  const runtimeDir = join(home, "vm1");
  mkdirSync(runtimeDir, { recursive: true });
  const writer = spawn(process.execPath, ["-e", FLOODER, runtimeDir], { stdio: "ignore" });
  try {
    writeFileSync(join(runtimeDir, "vmm.json"), JSON.stringify({ driver: "qemu", pid: writer.pid, controlSocket: join(runtimeDir, "qmp.sock"), sockets: [] }));
    await sleep(500); // unwatched meanwhile, like a VM while no daemon runs: ~3 MB
    const handle = await adoptVm(runtimeDir);
    assert.ok(handle, "the writer is adopted as the VM's VMM");
    let largest = 0;
    for (const end = Date.now() + 3000; Date.now() < end; await sleep(20)) {
      largest = Math.max(largest, sizeOf(handle.consoleLogPath));
      assert.ok(sizeOf(`${handle.consoleLogPath}.1`) <= CONSOLE_LOG_CAP);
    }
    // 3 s at ~6.4 MB/s is ~20 MB uncapped; capped: 1 MiB plus ~250 ms of writes (~1.6 MB), with slack for a busy host.
    assert.ok(largest <= CONSOLE_LOG_CAP + 4 * 1024 * 1024, `console.log reached ${largest} bytes`);
    const tail = await readConsoleTail(handle.consoleLogPath, 64 * 1024);
    assert.ok(tail.data.length <= 64 * 1024);
    assert.match(tail.data.toString(), /^line \d+ of a guest/, "the tail starts at a whole line");
  } finally {
    writer.kill("SIGKILL");
  }
});

test("tail and follow read a huge log by its end only", async () => {
  const path = join(home, "big", "console.log");
  mkdirSync(join(home, "big"));
  writeFileSync(path, "");
  // 8 GiB, sparse: reading it whole would take minutes and all memory.
  const { truncateSync, appendFileSync } = await import("node:fs");
  truncateSync(path, 8 * 1024 ** 3);
  appendFileSync(path, "\nthe last line\n");
  const started = Date.now();
  const tail = await readConsoleTail(path, 4096);
  assert.ok(tail.data.length <= 4096);
  assert.match(tail.data.toString(), /the last line\n$/);
  // A follower far behind (the log grew while nobody capped it) skips to the last cap.
  const next = await readConsoleFrom(path, 0, 64 * 1024);
  assert.equal(next.offset, sizeOf(path) - CONSOLE_LOG_CAP + next.data.length);
  assert.ok(Date.now() - started < 1000);
});

test("a follower picks up after a rotation from the start of the new log", async () => {
  const path = join(home, "rot", "console.log");
  mkdirSync(join(home, "rot"));
  writeFileSync(path, "a".repeat(100));
  const first = await readConsoleFrom(path, 0, 64 * 1024);
  assert.equal(first.offset, 100);
  writeFileSync(path, "after\n"); // what capConsoleLog's truncate leaves, plus new output
  const next = await readConsoleFrom(path, first.offset, 64 * 1024);
  assert.deepEqual([next.data.toString(), next.offset], ["after\n", 6]);
});

test("a VMM restarted on the same runtime dir keeps its console capped", async () => {
  const runtimeDir = join(home, "vm2");
  mkdirSync(runtimeDir, { recursive: true });
  const first = spawn("sleep", ["30"], { stdio: "ignore" });
  watchConsoleLog(consoleLogPath(runtimeDir), first.pid!);
  first.kill("SIGKILL");
  const second = spawn(process.execPath, ["-e", FLOODER, runtimeDir], { stdio: "ignore" });
  try {
    watchConsoleLog(consoleLogPath(runtimeDir), second.pid!); // before the first watcher noticed its VMM died
    await sleep(2000);
    assert.ok(sizeOf(consoleLogPath(runtimeDir)) <= CONSOLE_LOG_CAP + 4 * 1024 * 1024, `console.log is ${sizeOf(consoleLogPath(runtimeDir))} bytes`);
    assert.ok(sizeOf(`${consoleLogPath(runtimeDir)}.1`) > 0, "it was rotated");
  } finally {
    second.kill("SIGKILL");
  }
});
