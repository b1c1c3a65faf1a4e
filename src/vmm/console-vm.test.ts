// A real guest flooding its serial console under QEMU (TCG here): the console log the VMM
// writes stays bounded while the VM runs. Boots once (run under the VM lock).
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { makeTempHome } from "../../test/helpers.ts";
import { forcedAccel } from "../host/index.ts";
import { CONSOLE_LOG_CAP, qemuDriver, type VmSpec } from "./index.ts";
import { buildTestInitramfs, ensureTestKernel, killProcessesMentioning, type TestKernel } from "../../test/kits/vm.ts";

let kernel: TestKernel | string;
const home = makeTempHome();
let initrd = "";
let disk = "";

before(async () => {
  kernel = await ensureTestKernel();
  if (typeof kernel === "string") return;
  initrd = join(home.home, "initrd.cpio");
  // /init: print to the serial console as fast as the guest can, forever.
  await buildTestInitramfs(kernel, initrd, { modules: [], script: "while true; do echo 'flood: a guest that never stops talking, line after line after line'; done > /dev/ttyS0" });
  disk = join(home.home, "disk.raw");
  await writeFile(disk, "");
  await truncate(disk, 1024 * 1024);
});

after(async () => {
  await killProcessesMentioning(home.home);
  home.cleanup();
});

const sizeOf = (p: string) => {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
};

test("a guest flooding its console: console.log stays within the cap, older output rotates", async (t) => {
  if (typeof kernel === "string") return t.skip(kernel);
  const spec: VmSpec = {
    kernelPath: kernel.vmlinuz,
    initrdPath: initrd,
    cmdline: "console=ttyS0 quiet panic=-1",
    rootDisk: { path: disk, format: "raw" },
    cpus: 1,
    memoryMib: 256,
    runtimeDir: join(home.home, "vm"),
    accel: forcedAccel() ?? "tcg",
  };
  const vm = await qemuDriver.start(spec);
  try {
    let largest = 0;
    let written = 0;
    let last = 0;
    const deadline = Date.now() + 90_000;
    // Until the guest has written three caps' worth (or 90 s pass).
    while (written < 3 * CONSOLE_LOG_CAP && Date.now() < deadline) {
      const size = sizeOf(vm.consoleLogPath);
      written += size >= last ? size - last : size;
      last = size;
      largest = Math.max(largest, size);
      assert.ok(sizeOf(`${vm.consoleLogPath}.1`) <= CONSOLE_LOG_CAP);
      await sleep(50);
    }
    t.diagnostic(`guest wrote at least ${written} bytes; console.log peaked at ${largest}`);
    assert.ok(written >= 3 * CONSOLE_LOG_CAP, `the guest wrote only ${written} bytes in 90 s`);
    assert.ok(sizeOf(`${vm.consoleLogPath}.1`) > 0, "older output rotated to console.log.1");
    assert.ok(largest <= CONSOLE_LOG_CAP + 1024 * 1024, `console.log reached ${largest} bytes`);
  } finally {
    await vm.kill();
  }
});
