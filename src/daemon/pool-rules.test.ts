import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { PoolRecord, PoolSpec, VmRecord } from "../store/index.ts";
import { checkPoolCap, matchingMember, nextPoolStep, type PoolRequest } from "./pool-rules.ts";
import { rebasePaths } from "./pools.ts";

const MIB = 1024 ** 2;
const GIB = 1024 * MIB;
const spec: PoolSpec = { kernel: null, cpus: 1, memoryBytes: 512 * MIB, net: "full", netPeer: false };

function member(name: string, over: Partial<VmRecord> = {}): VmRecord {
  return {
    name,
    id: name,
    state: "running",
    image: "busybox",
    kernel: "k1",
    vmm: "qemu",
    cpus: 1,
    memoryBytes: 512 * MIB,
    diskBytes: 0,
    pid: 1,
    ip: null,
    error: null,
    config: {},
    createdAt: "",
    startedAt: null,
    net: "full",
    netPeer: false,
    tap: null,
    stateReason: null,
    snapshot: null,
    pool: "busybox",
    ...over,
  };
}

const want: PoolRequest = { image: "busybox", kernel: "k1", vmm: "qemu", cpus: 1, memoryBytes: 512 * MIB, net: "full", netPeer: false };
const pool = (size: number, over: Partial<PoolRecord> = {}): PoolRecord => ({ image: "busybox", size, spec, createdAt: "", updatedAt: "", ...over });

describe("warm pools: which VM a create may take", () => {
  it("takes the oldest ready member with the same image, kernel, VMM, cpus, memory and network", () => {
    const members = [member("warming", { state: "creating" }), member("a"), member("b")];
    assert.equal(matchingMember(members, want)?.name, "a");
  });

  it("takes none when anything the request says differs, or it asks for a disk size or no start", () => {
    const members = [member("a")];
    for (const [what, differs] of [
      ["image", { image: "debian" }],
      ["kernel", { kernel: "k2" }],
      ["vmm", { vmm: "firecracker" }],
      ["cpus", { cpus: 2 }],
      ["memory", { memoryBytes: 256 * MIB }],
      ["net", { net: "none" }],
      ["net peer", { netPeer: true }],
      ["disk size", { diskBytes: 8 * GIB }],
      ["no start", { noStart: true }],
    ] as const) {
      assert.equal(matchingMember(members, { ...want, ...differs }), undefined, what);
    }
  });

  it("serves a request for a workspace slot only with a member whose slot is empty", () => {
    const slot = { path: "/r/vms/a/workspace.img", serial: "banger-workspace" };
    assert.equal(matchingMember([member("a")], { ...want, workspaceSlot: true }), undefined, "no slot");
    assert.equal(matchingMember([member("a", { config: { workspaceSlot: { ...slot, mountedAt: "/workspace" } } })], { ...want, workspaceSlot: true }), undefined, "filled");
    assert.equal(matchingMember([member("a", { config: { workspaceSlot: slot } })], { ...want, workspaceSlot: true })?.name, "a");
    assert.equal(matchingMember([member("a", { config: { workspaceSlot: slot } })], want)?.name, "a", "an unused slot is harmless");
  });

  it("never takes a member that is not ready: warming, removing, dead, or no longer pooled", () => {
    for (const state of ["creating", "removing", "stopped", "crashed", "paused"] as const) assert.equal(matchingMember([member("a", { state })], want), undefined, state);
    assert.equal(matchingMember([member("a", { pool: null })], want), undefined);
  });
});

describe("warm pools: the memory cap", () => {
  it("accepts sizes up to the cap, counting the other pools at their full size", () => {
    assert.doesNotThrow(() => checkPoolCap([], "busybox", 4, spec, 2 * GIB));
    assert.doesNotThrow(() => checkPoolCap([pool(2, { image: "debian" })], "busybox", 2, spec, 2 * GIB));
    // Resizing a pool replaces its own share, not adds to it.
    assert.doesNotThrow(() => checkPoolCap([pool(4)], "busybox", 4, spec, 2 * GIB));
  });

  it("refuses beyond it in one line with the numbers and the setting that raises it (a usage error)", () => {
    assert.throws(
      () => checkPoolCap([pool(2, { image: "debian" })], "busybox", 3, spec, 2 * GIB),
      (err: Error & { code?: number; hint?: string }) => {
        assert.equal(err.message, "pool busybox of 3 x 512 MiB would hold 2.5 GiB (with the other pools' 1.0 GiB), over pool.max_memory (2.0 GiB)");
        assert.equal(err.hint, "raise the cap: banger config set pool.max_memory 2560M (or ask for a smaller --size)");
        assert.equal(err.code, 1005, "InvalidArgument: the CLI exits 2");
        return true;
      },
    );
  });
});

describe("warm pools: the refill loop's next step", () => {
  const never = () => undefined;

  it("boots while a pool is short of its size, then rests", () => {
    assert.equal(nextPoolStep([pool(2)], [member("a")], 2 * GIB, never).kind, "boot");
    assert.equal(nextPoolStep([pool(2)], [member("a"), member("b", { state: "creating" })], 2 * GIB, never).kind, "idle");
  });

  it("removes dead members, members of a removed or re-specced pool, and members beyond the size", () => {
    assert.deepEqual(nextPoolStep([pool(1)], [member("a", { state: "crashed" })], 2 * GIB, never), { kind: "remove", vm: "a", why: "it is crashed" });
    assert.deepEqual(nextPoolStep([], [member("a")], 2 * GIB, never), { kind: "remove", vm: "a", why: "its pool is gone" });
    assert.deepEqual(nextPoolStep([pool(1)], [member("a", { cpus: 2 })], 2 * GIB, never), { kind: "remove", vm: "a", why: "its pool's spec changed" });
    assert.deepEqual(nextPoolStep([pool(1)], [member("a"), member("b")], 2 * GIB, never), { kind: "remove", vm: "b", why: "pool busybox is over its size 1" });
  });

  it("never boots past the cap, and trims to it when the cap was lowered", () => {
    const held = nextPoolStep([pool(3)], [member("a"), member("b")], GIB, never);
    assert.equal(held.kind, "idle");
    assert.match((held as { heldBack: Map<string, string> }).heldBack.get("busybox")!, /held back: pools hold 1\.0 GiB of pool\.max_memory \(1\.0 GiB\)/);
    assert.deepEqual(nextPoolStep([pool(2)], [member("a"), member("b")], 512 * MIB, never), {
      kind: "remove",
      vm: "b",
      why: "pools hold 1.0 GiB, over pool.max_memory (512 MiB)",
    });
  });

  it("waits after a failure instead of booting again at once", () => {
    const step = nextPoolStep([pool(1)], [], 2 * GIB, () => "the kernel is gone");
    assert.deepEqual(step, { kind: "idle", heldBack: new Map([["busybox", "the kernel is gone"]]) });
  });
});

describe("warm pools: a taken VM's files follow its new name", () => {
  it("moves paths under the old directory, and only those", () => {
    const config = { disk: { path: "/r/vms/pool-1/root.qcow2", format: "qcow2" }, other: "/r/vms/pool-10/x", list: ["/r/vms/pool-1"] };
    assert.deepEqual(rebasePaths(config, "/r/vms/pool-1", "/r/vms/dev"), { disk: { path: "/r/vms/dev/root.qcow2", format: "qcow2" }, other: "/r/vms/pool-10/x", list: ["/r/vms/dev"] });
  });
});
