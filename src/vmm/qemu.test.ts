// Real boots of Debian's cloud kernel under QEMU (TCG here) with a tiny busybox initramfs.
// Three boots, ~2 s each: the full lifecycle with adopt and a clean power-off; a VM whose
// starting process dies, adopted, ignoring the power button (stop falls back to QMP quit);
// and kill.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Duplex } from "node:stream";
import { REPO } from "../../test/helpers.ts";
import { BangerError } from "../util/errors.ts";
import { buildQemuArgv, cleanupDeadVm, qemuDriver, qmpCommand, type VmHandle, type VmSpec } from "./index.ts";
import { qemuTestBed } from "../../test/kits/vm.ts";

const MARKER = "BANGER-QEMU-TEST-MARKER";

// /init: report the disk, serve an echo on the banger.agent port, power off on the ACPI
// power button only when the command line asks for it (the agent will do that for real).
const SCRIPT = `
[ -b /dev/vda ] && echo VDA-PRESENT
for p in /sys/class/virtio-ports/*; do
  if [ "$(cat $p/name)" = banger.agent ]; then
    # read() gives EOF while the host side is not connected: read again, but keep the
    # port open (closing it discards data the host already sent).
    dev=/dev/$(basename $p)
    ( exec 3<>$dev; while true; do cat <&3 >&3; sleep 0.05; done ) &
  fi
done
if grep -q powerbutton=1 /proc/cmdline; then
  for e in /dev/input/event*; do ( head -c 1 $e >/dev/null; echo POWER-BUTTON; poweroff -f ) & done
fi
echo ${MARKER}
while true; do sleep 1; done
`;

const bed = qemuTestBed({ modules: ["virtio_mmio", "virtio_console", "virtio_blk", "evdev", "button"], script: SCRIPT }, 8 * 1024 * 1024);
const specFor = (name: string, extraCmdline = ""): VmSpec => bed.spec(name, extraCmdline);

async function waitForConsole(handle: VmHandle, text: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await readFile(handle.consoleLogPath, "utf8").catch(() => "");
    if (log.includes(text)) return log;
    if (Date.now() > deadline) throw new Error(`console never showed ${text}; last output:\n${log.slice(-2000)}`);
    await sleep(100);
  }
}

async function echoRoundTrip(stream: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const timer = setTimeout(() => reject(new Error(`no echo, got ${JSON.stringify(got)}`)), 15_000);
    stream.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    stream.on("data", (b: Buffer) => {
      got += b.toString();
      if (got.includes(text)) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    stream.write(text);
  });
}

describe("qemu driver (real TCG boots)", () => {
  test("boots, reports status, pauses, streams to the agent port, is adopted, powers off cleanly", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const spec = { ...specFor("vm1", "powerbutton=1"), tcgCacheMib: 32 };
    const vm = await qemuDriver.start(spec);
    try {
      const log = await waitForConsole(vm, MARKER);
      assert.match(log, /VDA-PRESENT/, "the root disk shows up as /dev/vda");
      // Under TCG, QEMU's translation cache (its one executable anonymous mapping) is the size asked for.
      if ((await readFile(`/proc/${vm.pid}/cmdline`, "utf8")).includes("\0tcg,")) {
        const cache = (await readFile(`/proc/${vm.pid}/maps`, "utf8")).split("\n").filter((l) => / rwxp 00000000 00:00 0\s*$/.test(l));
        assert.equal(cache.length, 1, `one translation cache mapping:\n${cache.join("\n")}`);
        const [from, to] = cache[0]!
          .split(" ")[0]!
          .split("-")
          .map((h) => Number.parseInt(h, 16));
        assert.ok(Math.abs(to! - from! - 32 * 1024 ** 2) <= 64 * 1024, `the cache is 32 MiB, not ${(to! - from!) / 1024 ** 2} MiB`);
      }
      assert.equal(await vm.status(), "running");
      await vm.pause();
      assert.equal(await vm.status(), "paused");
      await vm.resume();
      assert.equal(await vm.status(), "running");
      await assert.rejects(qmpCommand(join(spec.runtimeDir, "qmp.sock"), "no-such-command"), /CommandNotFound/);

      assert.equal(vm.agentOverSerial, true, "the agent is reached on a virtio-serial port");
      const stream = await vm.agentStream();
      const echoed = await echoRoundTrip(stream, "hello agent\n").catch(async (err: Error) => {
        throw new Error(`${err.message}; console:\n${(await readFile(vm.consoleLogPath, "utf8")).slice(-1500)}`);
      });
      assert.match(echoed, /hello agent/);
      stream.destroy();

      // A restarted daemon finds the VM from the runtime dir alone.
      const adopted = await qemuDriver.adopt(spec.runtimeDir);
      assert.ok(adopted, "adopt finds the running VM");
      assert.equal(adopted.pid, vm.pid);
      assert.equal(await adopted.status(), "running");
      const again = await adopted.agentStream();
      assert.match(await echoRoundTrip(again, "after adopt\n"), /after adopt/);
      again.destroy();

      assert.equal(await adopted.stop(20_000), "powerdown");
      assert.equal(vm.isRunning(), false);
      assert.match(await readFile(vm.consoleLogPath, "utf8"), /POWER-BUTTON/);
      assert.deepEqual((await readdir(spec.runtimeDir)).sort(), ["console.log", "vmm.log"], "only logs remain");
      assert.equal(await qemuDriver.adopt(spec.runtimeDir), undefined, "nothing to adopt once stopped");
    } finally {
      if (vm.isRunning()) await vm.kill();
    }
  });

  test("a VM started by a process that then dies (a daemon SIGKILLed) is adopted and stopped via QMP quit", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const spec = specFor("vm2");
    // The "daemon": a separate node process that starts the VM, reports, and is killed.
    const script = join(bed.home, "daemon.mts");
    await writeFile(
      script,
      `import { qemuDriver } from ${JSON.stringify(join(REPO, "src/vmm/index.ts"))};\n` +
        `const vm = await qemuDriver.start(${JSON.stringify(spec)});\n` +
        `console.log(vm.pid);\nsetInterval(() => {}, 1000);\n`,
    );
    const daemon = spawn(process.execPath, ["--import", "tsx", script], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
    const pid = Number(await new Promise<string>((resolve) => daemon.stdout.once("data", (b: Buffer) => resolve(b.toString().trim()))));
    daemon.kill("SIGKILL");
    await new Promise((resolve) => daemon.once("exit", resolve));

    const vm = await qemuDriver.adopt(spec.runtimeDir);
    try {
      assert.ok(vm, "the VM outlived its daemon");
      assert.equal(vm.pid, pid);
      await waitForConsole(vm, MARKER);
      // This guest ignores the power button: stop falls back to QMP quit.
      assert.equal(await vm.stop(1000), "quit");
      assert.equal(vm.isRunning(), false);
      assert.deepEqual((await readdir(spec.runtimeDir)).sort(), ["console.log", "vmm.log"]);
    } finally {
      if (vm?.isRunning()) await vm.kill();
    }
  });

  test("kill ends the VMM at once and cleans its sockets", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const spec = specFor("vm3");
    const vm = await qemuDriver.start(spec);
    await vm.kill();
    assert.equal(vm.isRunning(), false);
    assert.equal(await vm.stop(), "not-running");
    assert.deepEqual((await readdir(spec.runtimeDir)).sort(), ["console.log", "vmm.log"]);
    await rm(spec.runtimeDir, { recursive: true });
  });
});

describe("qemu driver (no boot)", () => {
  test("adopt ignores a pid that is not this VM's qemu", async () => {
    const dir = join(bed.home, "fake");
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    // Our own pid is alive but its command line does not name the runtime dir.
    await writeFile(join(dir, "vmm.json"), JSON.stringify({ driver: "qemu", pid: process.pid, controlSocket: "x", sockets: [] }));
    assert.equal(await qemuDriver.adopt(dir), undefined);
    assert.equal(await qemuDriver.adopt(join(bed.home, "missing")), undefined);
  });

  test("cleanupDeadVm removes a dead VM's sockets, RAM file and pid file, keeps logs, refuses a live one", async () => {
    const dir = join(bed.home, "dead");
    await mkdir(dir, { recursive: true });
    const dead = spawnSync("true").pid; // a pid that has exited
    for (const f of ["qmp.sock", "agent.sock", "console.log", "vmm.log", "vmm.pid", "ram.mem"]) await writeFile(join(dir, f), "");
    const state = { driver: "qemu", pid: dead, controlSocket: join(dir, "qmp.sock"), sockets: [join(dir, "qmp.sock"), join(dir, "agent.sock")], memoryFile: join(dir, "ram.mem") };
    await writeFile(join(dir, "vmm.json"), JSON.stringify(state));
    await cleanupDeadVm(dir);
    assert.deepEqual((await readdir(dir)).sort(), ["console.log", "vmm.log"]);
    // A live VMM: the state's pid runs a command line naming the dir.
    const live = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", dir], { stdio: "ignore" });
    try {
      await writeFile(join(dir, "vmm.json"), JSON.stringify({ driver: "qemu", pid: live.pid, controlSocket: "x", sockets: [] }));
      await assert.rejects(cleanupDeadVm(dir), /still running/);
    } finally {
      live.kill("SIGKILL");
    }
  });

  test("bad specs fail before anything starts", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    await assert.rejects(qemuDriver.start({ ...specFor("bad1"), cpus: 0 }), /cpus must be 1-32/);
    await assert.rejects(qemuDriver.start({ ...specFor("bad2"), kernelPath: "/nonexistent/vmlinuz" }), BangerError);
    // A missing tap is refused up front (QEMU as root would create one of its own).
    await assert.rejects(qemuDriver.start({ ...specFor("bad4"), tap: "bgnosuchtap0" }), /tap device bgnosuchtap0 not found/);
    // QEMU itself refuses (a raw file called qcow2): the error carries its last log line, nothing stays behind.
    const notQcow = specFor("bad5");
    await assert.rejects(qemuDriver.start({ ...notQcow, rootDisk: { path: bed.disk, format: "qcow2" } }), /the VMM exited while waiting for QMP: .*qcow2/i);
    assert.deepEqual(
      (await readdir(notQcow.runtimeDir)).filter((n) => !n.endsWith(".log")),
      [],
      "only logs remain",
    );
    const long = join(bed.home, "x".repeat(100));
    await assert.rejects(qemuDriver.start({ ...specFor("bad3"), runtimeDir: long }), /socket path too long/);
  });

  test("the argv wires the console, QMP, disk, network and agent port", (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const spec = { ...specFor("argv"), tap: "tap0", mac: "06:00:ac:10:00:02" };
    const argv = buildQemuArgv(spec, { accel: "tcg", agentChannel: "virtio-serial" });
    const joined = argv.join(" ");
    assert.equal(argv[0], "qemu-system-x86_64");
    assert.match(joined, /-M microvm,/);
    assert.match(joined, /-accel tcg( |$)/, "no tcgCacheMib: QEMU's own default");
    assert.match(buildQemuArgv({ ...spec, tcgCacheMib: 64 }, { accel: "tcg", agentChannel: "virtio-serial" }).join(" "), /-accel tcg,tb-size=64 /);
    assert.match(joined, new RegExp(`-qmp unix:${spec.runtimeDir}/qmp.sock,server=on,wait=off`));
    assert.match(joined, /virtserialport,chardev=agent,name=banger\.agent/);
    assert.match(joined, /-netdev tap,id=net0,ifname=tap0,script=no,downscript=no/);
    assert.match(joined, /virtio-net-device,netdev=net0,mac=06:00:ac:10:00:02/);
    const vsock = buildQemuArgv({ ...spec, vsockCid: 7, tcgCacheMib: 64 }, { accel: "kvm", agentChannel: "vhost-vsock" }).join(" ");
    assert.match(vsock, /-accel kvm /, "KVM has no translation cache");
    assert.match(vsock, /vhost-vsock-device,guest-cid=7/);
    assert.match(vsock, /-cpu host/);
    assert.doesNotMatch(vsock, /virtserialport/);
  });

  test("a comma in a path (BANGER_HOME's) is doubled wherever QEMU parses options, or it would end the value there", () => {
    const spec = {
      cpus: 1,
      memoryMib: 64,
      kernelPath: "/k,ernel",
      cmdline: "console=ttyS0",
      runtimeDir: "/r,un",
      rootDisk: { path: "/d,isk.qcow2", format: "qcow2" },
      extraDisks: [{ path: "/w,s.raw", format: "raw", serial: "ws" }],
      memoryFile: "/m,em",
    } as VmSpec;
    const argv = buildQemuArgv(spec, { accel: "tcg", agentChannel: "virtio-serial" });
    for (const opt of ["mem-path=/m,,em,", "path=/r,,un/console.log,", "unix:/r,,un/qmp.sock,", "unix:/r,,un/qmp-events.sock,", "file=/d,,isk.qcow2,", "file=/w,,s.raw,", "path=/r,,un/agent.sock,"]) {
      assert.ok(
        argv.some((a) => a.includes(opt)),
        `${opt} in ${argv.join(" ")}`,
      );
    }
    assert.equal(argv[argv.indexOf("-kernel") + 1], "/k,ernel", "a path given alone is not an option string");
  });
});
