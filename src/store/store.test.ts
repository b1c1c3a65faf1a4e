import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openStore } from "./index.ts";
import { MIGRATIONS } from "./migrations.ts";
import { makeTempHome, REPO } from "../../test/helpers.ts";

describe("store", () => {
  it("applies every migration to an empty file and is idempotent on reopen", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const path = join(home, "banger.db");
      const s = openStore(path);
      assert.equal(s.schemaVersion, MIGRATIONS.length);
      const tables = (s.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
      assert.deepEqual(tables, ["images", "kernels", "operations", "pools", "sandboxes", "sessions", "settings", "snapshots", "vms"]);
      assert.equal(s.db.pragma("journal_mode", { simple: true }), "wal");
      s.close();
      const again = openStore(path);
      assert.equal(again.schemaVersion, MIGRATIONS.length);
      again.close();
    } finally {
      cleanup();
    }
  });

  it("refuses a store written by a newer banger", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const path = join(home, "banger.db");
      const db = new Database(path);
      db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
      db.close();
      assert.throws(() => openStore(path), /from a newer banger/);
    } finally {
      cleanup();
    }
  });

  it("keeps sandboxes beside their VMs: typed, ordered by start, gone with their VM (any path removing it)", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const s = openStore(join(home, "banger.db"));
      const vm = { image: "i1", kernel: "k1", vmm: "qemu", cpus: 1, memoryBytes: 512 * 1024 ** 2, diskBytes: 0, pid: null, ip: null, error: null, config: {}, state: "running" as const };
      s.insertVm({ ...vm, name: "iaaa", id: "a" });
      s.insertVm({ ...vm, name: "ibbb", id: "b" });
      const row = { template: "base", metadata: { k: "v" }, envVars: { A: "1" }, accessToken: "t0k", endAt: "2030-01-01T00:00:00.000Z", autoPause: true };
      s.sandboxes.insert({ ...row, id: "ibbb", vm: "ibbb", startedAt: "2026-01-02T00:00:00.000Z" });
      s.sandboxes.insert({ ...row, id: "iaaa", vm: "iaaa", accessToken: null, autoPause: false, startedAt: "2026-01-01T00:00:00.000Z" });
      assert.deepEqual(
        s.sandboxes.list().map((x) => x.id),
        ["iaaa", "ibbb"],
      );
      assert.deepEqual(s.sandboxes.get("ibbb"), { ...row, id: "ibbb", vm: "ibbb", startedAt: "2026-01-02T00:00:00.000Z" });
      assert.equal(s.sandboxes.setEndAt("iaaa", "2029-01-01T00:00:00.000Z"), true);
      assert.equal(s.sandboxes.nextEndAt(), "2029-01-01T00:00:00.000Z");
      assert.throws(() => s.sandboxes.insert({ ...row, id: "iccc", vm: "nosuchvm", startedAt: "2026-01-03T00:00:00.000Z" }), /FOREIGN KEY/);
      s.deleteVm("iaaa");
      assert.equal(s.sandboxes.get("iaaa"), undefined);
      assert.deepEqual(
        s.sandboxes.list().map((x) => x.id),
        ["ibbb"],
      );
      s.close();
    } finally {
      cleanup();
    }
  });

  it("keeps warm pools, lists their members, and lets only one caller take a member", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const s = openStore(join(home, "banger.db"));
      const spec = { kernel: null, cpus: 1, memoryBytes: 512 * 1024 ** 2, net: "full" as const, netPeer: false };
      s.pools.put("i1", 2, spec);
      s.pools.put("i1", 3, { ...spec, cpus: 2 });
      assert.deepEqual(
        s.pools.list().map((p) => [p.image, p.size, p.spec.cpus]),
        [["i1", 3, 2]],
      );
      const vm = { id: "", image: "i1", kernel: "k1", vmm: "qemu", cpus: 1, memoryBytes: 512 * 1024 ** 2, diskBytes: 0, pid: null, ip: null, error: null, config: {} };
      s.insertVm({ ...vm, name: "pool-a", id: "a", state: "running", pool: "i1" });
      s.insertVm({ ...vm, name: "pool-b", id: "b", state: "creating", pool: "i1" });
      s.insertVm({ ...vm, name: "mine", id: "c", state: "running" });
      assert.deepEqual(
        s.pools.members("i1").map((m) => m.name),
        ["pool-a", "pool-b"],
      );
      assert.equal(s.pools.take("pool-b", "x"), false, "a warming member is not taken");
      assert.equal(s.pools.take("pool-a", "mine"), false, "a name in use is not taken");
      assert.equal(s.pools.take("pool-a", "first"), true);
      assert.equal(s.pools.take("pool-a", "second"), false, "taken once only");
      assert.equal(s.getVm("first")?.pool, null);
      assert.equal(s.getVm("first")?.id, "a");
      assert.deepEqual(
        s.pools.members().map((m) => m.name),
        ["pool-b"],
      );
      assert.equal(s.pools.delete("i1"), true);
      s.close();
    } finally {
      cleanup();
    }
  });

  it("stores and returns typed kernels, images, vms, sessions and operations", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const s = openStore(join(home, "banger.db"));
      s.putKernel({
        name: "k1",
        source: "pull:http://x/k.tar.zst",
        kernelVersion: "6.1.0",
        distro: "debian",
        arch: "x86_64",
        vmlinuxSha256: "a".repeat(64),
        hasInitrd: true,
        modules: ["virtio_blk"],
        sizeBytes: 10,
      });
      s.putImage({ name: "i1", source: "oci:alpine", digest: "sha256:abc", kernelRef: "k1", distro: "alpine", arch: "x86_64", sizeBytes: 20, config: { Cmd: ["sh"] } });
      s.insertVm({
        name: "v1",
        id: "id1",
        state: "stopped",
        image: "i1",
        kernel: "k1",
        vmm: "qemu",
        cpus: 2,
        memoryBytes: 512 * 1024 ** 2,
        diskBytes: 0,
        pid: null,
        ip: null,
        error: null,
        config: {},
      });
      s.putSession({ vm: "v1", name: "s1", command: "sleep 1", state: "running", exitCode: null });
      const op = s.startOperation("vm.create", "v1");
      s.finishOperation(op, "failed", "it broke");

      assert.deepEqual(s.getKernel("k1")?.modules, ["virtio_blk"]);
      assert.equal(s.getKernel("k1")?.hasInitrd, true);
      assert.deepEqual(s.getImage("i1")?.config, { Cmd: ["sh"] });
      assert.deepEqual(s.vmsUsingImage("i1"), ["v1"]);
      assert.deepEqual(s.vmsUsingKernel("k1"), ["v1"]);
      assert.equal(s.updateVm("v1", { state: "running", pid: 42, ip: "172.30.0.2" }), true);
      assert.equal(s.updateVm("ghost", { state: "running" }), false);
      const v = s.getVm("v1")!;
      assert.equal(v.state, "running");
      assert.equal(v.pid, 42);
      // Records speak bytes and amd64/arm64 whatever the columns hold (memory_mib, arch as first stored).
      assert.equal(v.memoryBytes, 512 * 1024 ** 2);
      assert.equal(s.db.prepare("SELECT memory_mib FROM vms WHERE name = 'v1'").pluck().get(), 512);
      assert.equal(s.updateVm("v1", { memoryBytes: 1024 ** 3 }), true);
      assert.equal(s.getVm("v1")!.memoryBytes, 1024 ** 3);
      assert.equal(s.getKernel("k1")?.arch, "amd64");
      assert.equal(s.getImage("i1")?.arch, "amd64");
      s.db.prepare("UPDATE images SET arch = 'aarch64' WHERE name = 'i1'").run();
      assert.equal(s.getImage("i1")?.arch, "arm64", "a row written by an older banger reads as arm64 too");
      assert.equal(s.listSessions("v1")[0]?.command, "sleep 1");
      const [o] = s.listOperations();
      assert.equal(o?.state, "failed");
      assert.equal(o?.error, "it broke");
      // A state outside the enum is refused by the schema itself.
      assert.throws(() => s.updateVm("v1", { state: "exploded" as never }), /CHECK constraint/);
      // Deleting a VM takes its sessions with it.
      s.deleteVm("v1");
      assert.deepEqual(s.listSessions(), []);
      s.close();
    } finally {
      cleanup();
    }
  });

  it("finds the VM on a tap by address and a VM by its name in any ASCII case, as the guests' DNS asks", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const s = openStore(join(home, "banger.db"));
      const vm = (name: string, ip: string | null) =>
        s.insertVm({ name, id: `id-${name}`, state: "running", image: "i", kernel: "k", vmm: "qemu", cpus: 1, memoryBytes: 64 * 1024 ** 2, diskBytes: 0, pid: null, ip, error: null, config: {} });
      vm("Alpha", "172.30.0.2");
      vm("beta", null);
      assert.equal(s.vmOnTap("172.30.0.2"), undefined, "an address without a tap is not a guest asking");
      s.updateVm("Alpha", { tap: "tap0" });
      assert.equal(s.vmOnTap("172.30.0.2")?.name, "Alpha");
      assert.equal(s.vmOnTap("172.30.0.3"), undefined);
      assert.equal(s.vmWithAddressNamed("alpha")?.ip, "172.30.0.2");
      assert.equal(s.vmWithAddressNamed("beta"), undefined, "a VM without an address has no name to resolve");
      assert.equal(s.vmWithAddressNamed("gamma"), undefined);
      s.close();
    } finally {
      cleanup();
    }
  });

  it("is consistent after SIGKILL in the middle of a burst of writes", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      const path = join(home, "banger.db");
      for (let round = 0; round < 3; round++) {
        const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "test/fixtures/store-writer.ts"), path, String(round)], { stdio: ["ignore", "pipe", "inherit"], cwd: REPO });
        await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
        await new Promise((r) => setTimeout(r, 300 + round * 100));
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await exited;

        const s = openStore(path);
        assert.equal(s.db.pragma("integrity_check", { simple: true }), "ok");
        const vms = s.listVms();
        const ops = s.listOperations(1_000_000);
        assert.ok(vms.length > 0, "the writer made progress before it was killed");
        // Each transaction wrote a VM and its finished operation together: never one alone.
        assert.equal(ops.length, vms.length);
        assert.ok(vms.every((v) => v.state === "stopped"));
        assert.ok(ops.every((o) => o.state === "succeeded"));
        // Writing still works after the crash.
        s.putKernel({ name: `k${round}`, source: "test", kernelVersion: "", distro: "", arch: "x86_64", vmlinuxSha256: "0".repeat(64), hasInitrd: false, modules: [], sizeBytes: 0 });
        s.close();
      }
    } finally {
      cleanup();
    }
  });

  it("migrates a schema-2 store to VM states crashed/paused/removing with a reason, keeping VMs and their sessions", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const path = join(home, "banger.db");
      const old = new Database(path);
      old.pragma("foreign_keys = ON");
      for (const m of MIGRATIONS.slice(0, 2)) old.exec(m);
      old.pragma("user_version = 2");
      old
        .prepare(
          "INSERT INTO vms (name, id, state, image, kernel, vmm, cpus, memory_mib, config, created_at, net, tap) VALUES ('v1', 'id1', 'running', 'i', 'k', 'qemu', 1, 256, '{}', 'now', 'none', 'tap3')",
        )
        .run();
      old.prepare("INSERT INTO sessions (vm, name, command, state, created_at) VALUES ('v1', 's1', 'sleep 9', 'running', 'now')").run();
      old.close();

      const s = openStore(path);
      assert.equal(s.schemaVersion, MIGRATIONS.length);
      const v = s.getVm("v1")!;
      assert.deepEqual([v.state, v.net, v.tap, v.stateReason], ["running", "none", "tap3", null]);
      assert.equal(s.listSessions("v1")[0]?.command, "sleep 9", "the rebuild of vms kept the sessions that reference it");
      for (const state of ["crashed", "paused", "removing"] as const) {
        assert.equal(s.updateVm("v1", { state, stateReason: `why ${state}` }), true);
        assert.deepEqual([s.getVm("v1")!.state, s.getVm("v1")!.stateReason], [state, `why ${state}`]);
      }
      assert.equal(s.db.pragma("foreign_keys", { simple: true }), 1, "foreign keys are on again after migrating");
      s.deleteVm("v1");
      assert.deepEqual(s.listSessions(), [], "and still cascade");
      s.close();
    } finally {
      cleanup();
    }
  });

  it("keeps snapshots typed, tells which VMs were restored from one, and migrates a schema-3 store's VMs to snapshot null", () => {
    const { home, cleanup } = makeTempHome();
    try {
      const path = join(home, "banger.db");
      const old = new Database(path);
      for (const m of MIGRATIONS.slice(0, 3)) old.exec(m);
      old.pragma("user_version = 3");
      old.prepare("INSERT INTO vms (name, id, state, image, kernel, vmm, cpus, memory_mib, config, created_at) VALUES ('old', 'id0', 'stopped', 'i', 'k', 'qemu', 1, 256, '{}', 'now')").run();
      old.close();
      const s = openStore(path);
      assert.equal(s.getVm("old")?.snapshot, null);
      const snap = {
        name: "s1",
        sourceVm: "old",
        image: "i",
        kernel: "k",
        vmm: "qemu",
        cpus: 2,
        memoryBytes: 512 * 1024 ** 2,
        net: "full" as const,
        netPeer: true,
        hasNic: true,
        diskFile: "disk.qcow2",
        diskFormat: "qcow2" as const,
        stateBytes: 1000,
        memoryFileBytes: 512 * 1024 ** 2,
        diskBytes: 2000,
        stateSha256: "a".repeat(64),
        diskSha256: "b".repeat(64),
        internal: false,
        pauseMs: 120,
        workspace: { slot: { file: "workspace.img", bytes: 16 * 1024 ** 3, serial: "banger-workspace", mountedAt: "/workspace" }, record: { guestPath: "/workspace" } },
      };
      s.snapshots.insert(snap);
      const got = s.snapshots.get("s1")!;
      assert.deepEqual({ ...got, createdAt: undefined }, { ...snap, createdAt: undefined });
      assert.match(got.createdAt, /^\d{4}-/);
      assert.throws(() => s.snapshots.insert(snap), /UNIQUE/, "one row per name");
      assert.throws(() => s.snapshots.insert({ ...snap, name: "s2", diskFormat: "vmdk" as never }), /CHECK constraint/);
      s.insertVm({
        name: "child",
        id: "id1",
        state: "running",
        image: "i",
        kernel: "k",
        vmm: "qemu",
        cpus: 2,
        memoryBytes: 512 * 1024 ** 2,
        diskBytes: 0,
        pid: null,
        ip: null,
        error: null,
        config: {},
        snapshot: "s1",
      });
      assert.equal(s.getVm("child")?.snapshot, "s1");
      assert.deepEqual(s.snapshots.vmsUsing("s1"), ["child"]);
      assert.deepEqual(s.snapshots.vmsUsing("nope"), []);
      assert.deepEqual(
        s.snapshots.list().map((r) => r.name),
        ["s1"],
      );
      assert.equal(s.snapshots.delete("s1"), true);
      assert.equal(s.snapshots.delete("s1"), false);
      assert.equal(s.snapshots.get("s1"), undefined);
      s.close();
    } finally {
      cleanup();
    }
  });
});
