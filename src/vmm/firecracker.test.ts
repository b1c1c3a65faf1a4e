// The firecracker driver against a stand-in for the firecracker binary (test/fixtures/firecracker/fake.ts): a mock
// by necessity, as no firecracker binary and no fast KVM exist on this host. The stand-in
// validates every request against Firecracker's official swagger file and records it, so
// these tests assert both that each call is one Firecracker accepts and the call sequence.
// With a real `firecracker` on PATH, fast KVM and BANGER_FC_VMLINUX (an uncompressed
// vmlinux), the last test boots for real.
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { FC_SWAGGER, fcRecorded, installFakeFirecracker, readSome } from "../../test/kits/firecracker.ts";
import { probeKvm } from "../host/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { which } from "../util/exec.ts";
import { fcCall } from "./fcapi.ts";
import { SwaggerValidator } from "../../test/fixtures/firecracker/swagger.ts";
import { createFirecrackerDriver } from "./firecracker.ts";
import { killProcessesMentioning, processesMentioning } from "../../test/kits/vm.ts";
import { buildJailerArgv, firecrackerDriver, jailerChrootDir, type VmSpec } from "./index.ts";

let home: { home: string; cleanup: () => void };
let fakeBinary = "";
let files: { kernel: string; initrd: string; disk: string };

before(async () => {
  home = makeTempHome();
  fakeBinary = await installFakeFirecracker(home.home);
  files = { kernel: join(home.home, "vmlinux"), initrd: join(home.home, "initrd"), disk: join(home.home, "rootfs.ext4") };
  for (const f of Object.values(files)) await writeFile(f, "placeholder");
});

after(async () => {
  await killProcessesMentioning(home.home);
  delete process.env.FC_FAKE_RECORD;
  delete process.env.FC_FAKE_IGNORE_CAD;
  home?.cleanup();
});

function specFor(name: string): VmSpec {
  return {
    kernelPath: files.kernel,
    initrdPath: files.initrd,
    cmdline: "console=ttyS0 reboot=k panic=1",
    rootDisk: { path: files.disk, format: "raw" },
    cpus: 2,
    memoryMib: 512,
    runtimeDir: join(home.home, name),
    // The stand-in never opens the tap; `lo` exists everywhere, which satisfies the driver's
    // check that the tap exists (creating a real tap is the net module's business).
    tap: "lo",
    mac: "06:00:AC:10:00:02",
    vsockCid: 7,
  };
}

describe("firecracker driver (swagger-validating stand-in)", () => {
  const driver = () => createFirecrackerDriver({ binary: fakeBinary });

  test("configures the VM with swagger-valid calls in order, controls it, streams over vsock, is adopted, stops", async () => {
    const record = join(home.home, "requests-1.jsonl");
    process.env.FC_FAKE_RECORD = record;
    const spec = specFor("fc1");
    const vm = await driver().start(spec);
    try {
      const calls = await fcRecorded(record);
      for (const c of calls) assert.deepEqual(c.problems ?? [], [], `${c.method} ${c.url} violates the swagger`);
      const sequence = calls.filter((c) => c.method && c.method !== "GET").map((c) => `${c.method} ${c.url}`);
      assert.deepEqual(sequence, ["PUT /logger", "PUT /metrics", "PUT /boot-source", "PUT /drives/rootfs", "PUT /machine-config", "PUT /network-interfaces/eth0", "PUT /vsock", "PUT /actions"]);
      const byUrl = (url: string) => calls.find((c) => c.url === url && c.method === "PUT");
      assert.deepEqual(byUrl("/boot-source")?.body, { kernel_image_path: files.kernel, boot_args: spec.cmdline, initrd_path: files.initrd });
      // Relative to Firecracker's working directory, the runtime dir, so a snapshot of this VM restores with another disk.
      assert.deepEqual(byUrl("/drives/rootfs")?.body, { drive_id: "rootfs", path_on_host: "root.disk", is_root_device: true, is_read_only: false });
      assert.equal(await readlink(join(spec.runtimeDir, "root.disk")), files.disk);
      assert.deepEqual(byUrl("/machine-config")?.body, { vcpu_count: 2, mem_size_mib: 512 });
      assert.deepEqual(byUrl("/network-interfaces/eth0")?.body, { iface_id: "eth0", host_dev_name: "lo", guest_mac: "06:00:AC:10:00:02" });
      assert.deepEqual(byUrl("/vsock")?.body, { guest_cid: 7, uds_path: join(spec.runtimeDir, "vsock.sock") });
      assert.deepEqual(byUrl("/actions")?.body, { action_type: "InstanceStart" });
      for (const c of calls.filter((x) => x.method === "PUT")) {
        assert.equal(c.headers?.["content-type"], "application/json");
        assert.equal(Number(c.headers?.["content-length"]), Buffer.byteLength(JSON.stringify(c.body)));
      }

      assert.equal(await vm.status(), "running");
      await vm.pause();
      assert.equal(await vm.status(), "paused");
      await vm.resume();
      assert.equal(await vm.status(), "running");
      // Firecracker refuses pre-boot calls after start; the driver surfaces its fault_message.
      await assert.rejects(fcCall(join(spec.runtimeDir, "fc.sock"), "PUT", "/machine-config", { vcpu_count: 1, mem_size_mib: 128 }), /not supported after starting the microVM/);

      // The stand-in drops the first vsock connection (guest listener not up): the driver retries.
      const stream = await vm.agentStream();
      assert.match(await readSome(stream, "\n"), /^GUEST-HELLO [0-9a-f]+\n$/, "guest bytes that came with OK are not lost");
      stream.write("ping");
      assert.equal(await readSome(stream, "ping"), "ping");
      stream.destroy();
      const vsockLines = (await fcRecorded(record)).filter((c) => c.vsock !== undefined);
      assert.deepEqual(
        vsockLines.map((c) => c.vsock),
        ["CONNECT 52\n"],
        "CONNECT arrives in one write",
      );

      const adopted = await firecrackerDriver.adopt(spec.runtimeDir);
      assert.ok(adopted);
      assert.equal(adopted.pid, vm.pid);
      assert.equal(await adopted.status(), "running");

      assert.equal(await adopted.stop(5000), "powerdown");
      assert.equal(vm.isRunning(), false);
      const last = (await fcRecorded(record)).filter((c) => c.method === "PUT").pop();
      assert.deepEqual(last?.body, { action_type: "SendCtrlAltDel" });
      assert.match(await readFile(vm.consoleLogPath, "utf8"), /guest booted/, "firecracker's stdout is the console log");
      assert.deepEqual((await readdir(spec.runtimeDir)).sort(), ["console.log", "vmm.log"]);
    } finally {
      if (vm.isRunning()) await vm.kill();
    }
  });

  test("stop kills a guest that ignores Ctrl+Alt+Del", async () => {
    process.env.FC_FAKE_RECORD = join(home.home, "requests-2.jsonl");
    process.env.FC_FAKE_IGNORE_CAD = "1";
    const vm = await driver().start(specFor("fc2"));
    try {
      assert.equal(await vm.stop(300), "killed");
      assert.equal(vm.isRunning(), false);
    } finally {
      delete process.env.FC_FAKE_IGNORE_CAD;
      if (vm.isRunning()) await vm.kill();
    }
  });

  test("a cancelled start leaves no VMM running and no sockets behind", async () => {
    process.env.FC_FAKE_RECORD = join(home.home, "requests-3.jsonl");
    const spec = specFor("fc-cancel");
    const ctrl = new AbortController();
    setTimeout(() => ctrl.abort(), 50);
    await assert.rejects(driver().start(spec, { signal: ctrl.signal }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Cancelled);
    assert.deepEqual(await processesMentioning(spec.runtimeDir), []);
    assert.deepEqual(
      (await readdir(spec.runtimeDir)).filter((n) => n.endsWith(".sock") || (n.startsWith("vmm.") && n !== "vmm.log")),
      [],
    );
  });

  test("refuses a qcow2 root disk and a missing binary before starting anything", async () => {
    const spec = specFor("fc3");
    await assert.rejects(driver().start({ ...spec, rootDisk: { path: files.disk, format: "qcow2" } }), /raw root disk/);
    await assert.rejects(createFirecrackerDriver({ binary: "firecracker-missing-binary" }).start(spec), /not found/);
    await rm(spec.runtimeDir, { recursive: true, force: true });
  });
});

describe("the swagger validator (so the stand-in is not a rubber stamp)", () => {
  const v = new SwaggerValidator(FC_SWAGGER);
  const json = { "content-type": "application/json", "content-length": "1" };
  const problems = (method: string, url: string, body: unknown, headers: Record<string, string> = json) => v.check(method, url, headers, body === undefined ? "" : JSON.stringify(body)).problems;

  test("accepts what Firecracker accepts", () => {
    assert.deepEqual(problems("PUT", "/machine-config", { vcpu_count: 2, mem_size_mib: 256, smt: false }), []);
    assert.deepEqual(problems("PUT", "/drives/root_1", { drive_id: "root_1", is_root_device: true, path_on_host: "/x", is_read_only: false }), []);
    assert.deepEqual(problems("GET", "/", undefined, {}), []);
  });

  test("rejects what Firecracker rejects", () => {
    assert.match(problems("PUT", "/machine-config", { vcpu_count: 2, mem_size_mib: 256, bogus: 1 }).join(), /unknown field bogus/);
    assert.match(problems("PUT", "/machine-config", { vcpu_count: 0, mem_size_mib: 256 }).join(), /below 1/);
    assert.match(problems("PUT", "/machine-config", { vcpu_count: 1 }).join(), /missing required field mem_size_mib/);
    assert.match(problems("PUT", "/actions", { action_type: "Reboot" }).join(), /not one of/);
    assert.match(problems("PUT", "/drives/a", { drive_id: "b", is_root_device: true }).join(), /differs from body/);
    assert.match(problems("PUT", "/drives/a-b", { drive_id: "a-b", is_root_device: true }).join(), /characters other than/);
    assert.match(problems("PUT", "/vsock", { guest_cid: 2, uds_path: "/v" }).join(), /below 3/);
    assert.match(problems("DELETE", "/vsock", undefined).join(), /not allowed/);
    assert.match(problems("PUT", "/nonsense", {}).join(), /unknown path/);
    const charset = { "content-type": "application/json; charset=utf-8", "content-length": "1" };
    assert.match(problems("PUT", "/actions", { action_type: "InstanceStart" }, charset).join(), /exactly application\/json/);
  });
});

describe("jailer", () => {
  test("builds the jailer argv per Firecracker's docs", () => {
    const jailer = { execFile: "/usr/local/bin/firecracker", id: "vm-1", uid: 1234, gid: 1234, cgroupVersion: 2 as const, netns: "/var/run/netns/bg1" };
    assert.deepEqual(buildJailerArgv(jailer), [
      "jailer",
      "--id",
      "vm-1",
      "--exec-file",
      "/usr/local/bin/firecracker",
      "--uid",
      "1234",
      "--gid",
      "1234",
      "--cgroup-version",
      "2",
      "--netns",
      "/var/run/netns/bg1",
      "--",
      "--api-sock",
      "/run/firecracker.socket",
    ]);
    assert.equal(jailerChrootDir(jailer), "/srv/jailer/firecracker/vm-1/root");
    assert.throws(() => buildJailerArgv({ ...jailer, id: "bad_id!" }), /letters, digits or '-'/);
  });
});

describe("firecracker driver (real binary)", () => {
  test("boots a real VM", async (t) => {
    if (!which("firecracker")) return t.skip("no firecracker binary on PATH");
    const kvm = await probeKvm();
    if (!kvm.fast) return t.skip(`KVM not usable: ${kvm.detail}`);
    const vmlinux = process.env.BANGER_FC_VMLINUX;
    if (!vmlinux) return t.skip("set BANGER_FC_VMLINUX to an uncompressed vmlinux to boot for real");
    const disk = join(home.home, "real-disk.raw");
    await writeFile(disk, Buffer.alloc(1024 * 1024));
    const spec: VmSpec = { ...specFor("real"), kernelPath: vmlinux, initrdPath: undefined, tap: undefined, mac: undefined, rootDisk: { path: disk, format: "raw" } };
    await mkdir(spec.runtimeDir, { recursive: true });
    const vm = await firecrackerDriver.start(spec);
    try {
      assert.equal(await vm.status(), "running");
    } finally {
      await vm.kill();
    }
  });
});
