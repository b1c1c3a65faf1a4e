// Firecracker snapshots (saveSnapshot, restore) against the stand-in for the firecracker
// binary (test/fixtures/firecracker/fake.ts): a mock by necessity, as no firecracker binary
// and no fast KVM exist on this host. It validates every request against Firecracker's
// official swagger and records it, and it keeps a "guest memory" id that a snapshot saves
// and a restore brings back, so these tests assert the calls and what a user would see: the
// restored guest continues the snapshot's memory, on its own disk, tap and vsock socket.
// With a real `firecracker` on PATH, fast KVM and BANGER_FC_VMLINUX, the last test runs for real.
import assert from "node:assert/strict";
import { readdir, readFile, readlink, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { FC_SWAGGER, fcRecorded, installFakeFirecracker, readSome } from "../../test/kits/firecracker.ts";
import { killProcessesMentioning, processesMentioning } from "../../test/kits/vm.ts";
import { SwaggerValidator } from "../../test/fixtures/firecracker/swagger.ts";
import { probeKvm } from "../host/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { which } from "../util/exec.ts";
import { fcCall } from "./fcapi.ts";
import { createFirecrackerDriver, firecrackerDriver } from "./firecracker.ts";
import type { VmHandle, VmSpec } from "./index.ts";

const MIB = 1024 * 1024;
let home: { home: string; cleanup: () => void };
let fakeBinary = "";
let kernel = "";

before(async () => {
  home = makeTempHome();
  fakeBinary = await installFakeFirecracker(home.home);
  kernel = join(home.home, "vmlinux");
  await writeFile(kernel, "placeholder");
});

after(async () => {
  await killProcessesMentioning(home.home);
  delete process.env.FC_FAKE_RECORD;
  home?.cleanup();
});

const driver = () => createFirecrackerDriver({ binary: fakeBinary });

/** A VM with its own disk (a file holding its name) and runtime dir; `lo` stands in for a tap (the stand-in never opens it). */
async function specFor(name: string, opts: { tap?: boolean } = {}): Promise<VmSpec> {
  const disk = join(home.home, `${name}.raw`);
  await writeFile(disk, `disk of ${name}`);
  return {
    kernelPath: kernel,
    cmdline: "console=ttyS0 reboot=k panic=1",
    rootDisk: { path: disk, format: "raw" },
    cpus: 1,
    memoryMib: 256,
    runtimeDir: join(home.home, name),
    ...(opts.tap === false ? {} : { tap: "lo", mac: "06:00:AC:10:00:02" }),
    vsockCid: 3,
  };
}

/** The "guest memory" id the guest agent side of the stand-in reports over vsock. */
async function guestMemoryId(vm: VmHandle): Promise<string> {
  const stream = await vm.agentStream();
  try {
    const hello = await readSome(stream, "\n");
    const m = /^GUEST-HELLO ([0-9a-f]+)\n/.exec(hello);
    assert.ok(m, `unexpected hello ${JSON.stringify(hello)}`);
    return m[1] ?? "";
  } finally {
    stream.destroy();
  }
}

function assertSwaggerValid(calls: Awaited<ReturnType<typeof fcRecorded>>): void {
  for (const c of calls) assert.deepEqual(c.problems ?? [], [], `${c.method} ${c.url} violates the swagger`);
}

const apiCalls = (calls: Awaited<ReturnType<typeof fcRecorded>>) => calls.filter((c) => c.method && c.method !== "GET").map((c) => `${c.method} ${c.url}`);

/** Boots a VM, snapshots it paused into dir, kills it; returns the guest memory id it had. */
async function snapshotOf(name: string, dir: string, opts: { tap?: boolean } = {}): Promise<string> {
  process.env.FC_FAKE_RECORD = join(home.home, `${name}.jsonl`);
  const vm = await driver().start(await specFor(name, opts));
  try {
    const id = await guestMemoryId(vm);
    await vm.pause();
    await vm.saveSnapshot(dir);
    return id;
  } finally {
    await vm.kill();
  }
}

/** Nothing of a failed restore remains: no process, no sockets, links, pid or state files. */
async function assertNothingLeft(runtimeDir: string): Promise<void> {
  assert.deepEqual(await processesMentioning(runtimeDir), []);
  const left = (await readdir(runtimeDir).catch(() => [] as string[])).filter((n) => !n.endsWith(".log") && n !== "fc.metrics");
  assert.deepEqual(left, []);
}

describe("firecracker snapshots (swagger-validating stand-in)", () => {
  test("saves a paused VM and restores it in a new Firecracker: same memory, its own disk, tap and vsock socket", async () => {
    const parentRecord = join(home.home, "parent.jsonl");
    process.env.FC_FAKE_RECORD = parentRecord;
    const parent = await driver().start(await specFor("parent"));
    const dir = join(home.home, "snap1");
    let child: VmHandle | undefined;
    try {
      const parentMemory = await guestMemoryId(parent);
      await assert.rejects(parent.saveSnapshot(dir), /cannot snapshot a VM that is not paused/);
      await parent.pause();
      const sizes = await parent.saveSnapshot(dir);
      const create = (await fcRecorded(parentRecord)).filter((c) => c.url === "/snapshot/create");
      assertSwaggerValid(create);
      assert.deepEqual(
        create.map((c) => c.body),
        [{ snapshot_type: "Full", snapshot_path: join(dir, "vmstate"), mem_file_path: join(dir, "memory") }],
      );
      assert.equal(await parent.status(), "paused", "a snapshot does not resume the VM");
      assert.equal((await stat(join(dir, "memory"))).size, 256 * MIB);
      assert.ok(sizes.stateBytes > 0, "the device state takes space");
      assert.ok(sizes.memoryBytes < 256 * MIB, `sparse memory takes less than the VM's RAM (${sizes.memoryBytes} bytes)`);
      await parent.resume();
      assert.equal(await parent.status(), "running");

      const childRecord = join(home.home, "child.jsonl");
      process.env.FC_FAKE_RECORD = childRecord;
      const spec = await specFor("child");
      child = await driver().restore(spec, dir);
      const calls = await fcRecorded(childRecord);
      assertSwaggerValid(calls);
      assert.deepEqual(apiCalls(calls), ["PUT /logger", "PUT /metrics", "PUT /snapshot/load", "PATCH /vm"], "no boot source or devices: they come from the snapshot");
      assert.deepEqual(calls.find((c) => c.url === "/snapshot/load")?.body, {
        snapshot_path: join(dir, "vmstate"),
        mem_backend: { backend_type: "File", backend_path: join(dir, "memory") },
        network_overrides: [{ iface_id: "eth0", host_dev_name: "lo" }],
        vsock_override: { uds_path: join(spec.runtimeDir, "vsock.sock") },
        resume_vm: false,
      });
      assert.deepEqual(calls.find((c) => c.url === "/vm")?.body, { state: "Resumed" });

      assert.equal(await child.status(), "running");
      assert.notEqual(child.pid, parent.pid);
      assert.equal(await guestMemoryId(child), parentMemory, "the restored guest continues the snapshot's memory");
      const config = await fcCall<{ drives: Array<{ path_on_host: string }> }>(join(spec.runtimeDir, "fc.sock"), "GET", "/vm/config");
      assert.deepEqual(
        config.drives.map((d) => d.path_on_host),
        ["root.disk"],
      );
      assert.equal(await readlink(join(spec.runtimeDir, "root.disk")), spec.rootDisk.path, "the restored VM's drive is its own disk");
      assert.equal(await parent.status(), "running", "the parent keeps running");

      const adopted = await firecrackerDriver.adopt(spec.runtimeDir);
      assert.equal(adopted?.pid, child.pid);
      await child.kill();
      await assertNothingLeft(spec.runtimeDir);
    } finally {
      await child?.kill();
      await parent.kill();
    }
  });

  test("a truncated, corrupt or incomplete snapshot is refused with one clear line, and nothing is left", async () => {
    const dir = join(home.home, "snap2");
    await snapshotOf("damaged-src", dir);
    const oneLine = (re: RegExp, code: ErrorCode) => (e: unknown) => e instanceof BangerError && e.code === code && !e.message.includes("\n") && re.test(e.message);

    await truncate(join(dir, "memory"), 100 * MIB);
    const spec1 = await specFor("restore-truncated");
    await assert.rejects(driver().restore(spec1, dir), oneLine(/memory file holds 104857600 bytes, a 256 MiB VM needs 268435456/, ErrorCode.Integrity));
    await assertNothingLeft(spec1.runtimeDir);
    await truncate(join(dir, "memory"), 256 * MIB);

    // Corruption Firecracker finds (its state's checksum): its 400 becomes one line, and Firecracker exits.
    const state = await readFile(join(dir, "vmstate"));
    const corrupt = Buffer.from(state);
    corrupt.writeUInt8((corrupt.at(-5) ?? 0) ^ 0x01, corrupt.length - 5);
    await writeFile(join(dir, "vmstate"), corrupt);
    const spec2 = await specFor("restore-corrupt");
    await assert.rejects(driver().restore(spec2, dir), oneLine(/^Firecracker rejected PUT \/snapshot\/load \(400\): Load snapshot error: .*validation failed/, ErrorCode.Failed));
    await assertNothingLeft(spec2.runtimeDir);

    await rm(join(dir, "vmstate"));
    const spec3 = await specFor("restore-incomplete");
    await assert.rejects(driver().restore(spec3, dir), oneLine(/has no device state file/, ErrorCode.Integrity));
    await assertNothingLeft(spec3.runtimeDir);

    // Repaired, it restores: the refusals were about the damage.
    await writeFile(join(dir, "vmstate"), state);
    process.env.FC_FAKE_RECORD = join(home.home, "restore-good.jsonl");
    const vm = await driver().restore(await specFor("restore-good"), dir);
    assert.equal(await vm.status(), "running");
    await vm.kill();
  });
  test("a restore whose networking differs from the snapshot's is refused before the guest runs", async () => {
    const withNet = join(home.home, "snap-net");
    await snapshotOf("net-src", withNet);
    const spec1 = await specFor("restore-no-tap", { tap: false });
    process.env.FC_FAKE_RECORD = join(home.home, "restore-no-tap.jsonl");
    await assert.rejects(driver().restore(spec1, withNet), /has a network interface \(eth0\) but the restored VM has no tap/);
    const calls = await fcRecorded(join(home.home, "restore-no-tap.jsonl"));
    assert.ok(!calls.some((c) => c.url === "/vm"), "never resumed");
    await assertNothingLeft(spec1.runtimeDir);

    const noNet = join(home.home, "snap-nonet");
    await snapshotOf("nonet-src", noNet, { tap: false });
    const spec2 = await specFor("restore-tap");
    // Firecracker refuses an override for an interface the snapshot does not have.
    await assert.rejects(driver().restore(spec2, noNet), /Invalid network override/);
    await assertNothingLeft(spec2.runtimeDir);
  });

  test("a cancelled restore leaves nothing behind", async () => {
    const dir = join(home.home, "snap-cancel");
    await snapshotOf("cancel-src", dir);
    const spec = await specFor("restore-cancel");
    const ctrl = new AbortController();
    setTimeout(() => ctrl.abort(), 50);
    await assert.rejects(driver().restore(spec, dir, { signal: ctrl.signal }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Cancelled);
    await assertNothingLeft(spec.runtimeDir);
  });
});

describe("the swagger validator on snapshot calls (so the stand-in is not a rubber stamp)", () => {
  const v = new SwaggerValidator(FC_SWAGGER);
  const json = { "content-type": "application/json", "content-length": "1" };
  const problems = (method: string, url: string, body: unknown) => v.check(method, url, json, JSON.stringify(body)).problems.join("; ");

  test("accepts what Firecracker accepts", () => {
    assert.equal(problems("PUT", "/snapshot/create", { snapshot_type: "Full", snapshot_path: "s", mem_file_path: "m" }), "");
    const load = {
      snapshot_path: "s",
      mem_backend: { backend_type: "File", backend_path: "m" },
      network_overrides: [{ iface_id: "eth0", host_dev_name: "tap1" }],
      vsock_override: { uds_path: "v" },
      resume_vm: false,
    };
    assert.equal(problems("PUT", "/snapshot/load", load), "");
  });

  test("rejects what Firecracker rejects", () => {
    assert.match(problems("PUT", "/snapshot/create", { snapshot_type: "Partial", snapshot_path: "s", mem_file_path: "m" }), /not one of Full, Diff/);
    assert.match(problems("PUT", "/snapshot/create", { snapshot_path: "s" }), /missing required field mem_file_path/);
    assert.match(problems("PUT", "/snapshot/load", { snapshot_path: "s", mem_backend: { backend_type: "Copy", backend_path: "m" } }), /not one of File, Uffd/);
    assert.match(problems("PUT", "/snapshot/load", { snapshot_path: "s", mem_backend: { backend_type: "File", backend_path: "m", shared: true } }), /unknown field shared/);
    assert.match(problems("PUT", "/snapshot/load", { snapshot_path: "s", network_overrides: [{ iface_id: "eth0" }] }), /missing required field host_dev_name/);
    assert.match(problems("PUT", "/snapshot/load", { snapshot_path: "s", vsock_override: { path: "v" } }), /unknown field path/);
    assert.match(problems("PUT", "/snapshot/load", { snapshot_path: "s", resume_vm: "yes" }), /expected a boolean/);
    assert.match(problems("PATCH", "/vm", { state: "Running" }), /not one of Paused, Resumed/);
  });
});

describe("firecracker snapshots (real binary)", () => {
  test("snapshots a real VM and restores it", async (t) => {
    if (!which("firecracker")) return t.skip("no firecracker binary on PATH");
    const kvm = await probeKvm();
    if (!kvm.fast) return t.skip(`KVM not usable: ${kvm.detail}`);
    const vmlinux = process.env.BANGER_FC_VMLINUX;
    if (!vmlinux) return t.skip("set BANGER_FC_VMLINUX to an uncompressed vmlinux to boot for real");
    const real = async (name: string): Promise<VmSpec> => {
      const spec = await specFor(name, { tap: false });
      await writeFile(spec.rootDisk.path, Buffer.alloc(MIB));
      return { ...spec, kernelPath: vmlinux };
    };
    const vm = await firecrackerDriver.start(await real("real-parent"));
    const dir = join(home.home, "real-snap");
    try {
      await vm.pause();
      const sizes = await vm.saveSnapshot(dir);
      assert.ok(sizes.stateBytes > 0);
      const child = await firecrackerDriver.restore(await real("real-child"), dir);
      try {
        assert.equal(await child.status(), "running");
      } finally {
        await child.kill();
      }
    } finally {
      await vm.kill();
    }
  });
});
