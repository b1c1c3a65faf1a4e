// The E2B-compatible API's control plane, driven by the unmodified official `e2b` SDK (2.45.0)
// against a real bangerd and real VMs (QEMU): create from an image and from "base", getInfo,
// metadata, list with a metadata filter and paging, pause and connect (resume), timeout expiry
// (removes the VM; with autoPause pauses it; also when the daemon was down at the time), kill,
// fork and snapshots (state carried, checked with commands.run), a warm pool taken, a wrong key
// (AuthenticationError, also right after a rotation), an unknown id (NotFoundError), and
// sandboxes are ordinary VMs in `banger vm ls`, labelled.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { AuthenticationError, NotFoundError, Sandbox } from "e2b";
import { mustRun, stopDaemon } from "../helpers.ts";
import { type E2bTestBed, startE2bTestBed } from "../kits/e2b.ts";

interface VmRow {
  name: string;
  state: string;
  image: string;
  config: { sandbox?: string };
}

describe("E2B control plane through the official SDK (real VMs under QEMU)", () => {
  let bed: E2bTestBed;
  const vms = async (): Promise<VmRow[]> => JSON.parse((await mustRun(bed.banger(["vm", "ls", "--json"]))).stdout) as VmRow[];
  const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  let a: Sandbox;
  let b: Sandbox;

  before(async () => {
    bed = await startE2bTestBed();
  });
  after(async () => {
    await bed?.cleanup();
  });

  it("creates a sandbox from an image: getInfo has its template and metadata, and vm ls lists its VM, labelled", async () => {
    a = await Sandbox.create(bed.image, { ...bed.opts, metadata: { suite: "e2b", which: "a" } });
    assert.match(a.sandboxId, /^[a-z0-9]{20}$/);
    const info = await Sandbox.getInfo(a.sandboxId, bed.opts);
    assert.equal(info.sandboxId, a.sandboxId);
    assert.equal(info.templateId, bed.image);
    assert.deepEqual(info.metadata, { suite: "e2b", which: "a" });
    assert.equal(info.state, "running");
    assert.equal(info.memoryMB, 512);
    // The SDK's default timeout is 5 minutes.
    const ttl = info.endAt.getTime() - Date.now();
    assert.ok(ttl > 240_000 && ttl <= 300_000, `endAt ${info.endAt.toISOString()}`);
    const row = (await vms()).find((v) => v.name === a.sandboxId);
    assert.ok(row, "the sandbox's VM is in vm ls");
    assert.equal(row.state, "running");
    assert.equal(row.image, bed.image);
    assert.equal(row.config.sandbox, a.sandboxId);
  });

  it('"base" is the default image; list filters by metadata and pages with nextToken', async () => {
    b = await Sandbox.create("base", { ...bed.opts, metadata: { suite: "e2b", which: "b" } });
    assert.equal((await vms()).find((v) => v.name === b.sandboxId)?.image, bed.image);
    const onlyB = await Sandbox.list({ ...bed.opts, query: { metadata: { which: "b" } } }).nextItems();
    assert.deepEqual(
      onlyB.map((s) => s.sandboxId),
      [b.sandboxId],
    );
    assert.deepEqual(await Sandbox.list({ ...bed.opts, query: { metadata: { which: "nobody" } } }).nextItems(), []);
    const pages = Sandbox.list({ ...bed.opts, query: { metadata: { suite: "e2b" } }, limit: 1 });
    const first = await pages.nextItems();
    assert.equal(first.length, 1);
    assert.equal(pages.hasNext, true);
    const second = await pages.nextItems();
    assert.equal(second.length, 1);
    assert.equal(pages.hasNext, false);
    // Newest first (the API's default order).
    assert.deepEqual([first[0]!.sandboxId, second[0]!.sandboxId], [b.sandboxId, a.sandboxId]);
  });

  it("pauses (a second pause says false) and connect resumes it", async () => {
    assert.equal(await a.pause(), true);
    assert.equal(await a.pause(), false);
    assert.equal((await Sandbox.getInfo(a.sandboxId, bed.opts)).state, "paused");
    assert.equal((await vms()).find((v) => v.name === a.sandboxId)?.state, "paused");
    assert.deepEqual(
      (await Sandbox.list({ ...bed.opts, query: { metadata: { suite: "e2b" }, state: ["paused"] } }).nextItems()).map((s) => s.sandboxId),
      [a.sandboxId],
    );
    const again = await Sandbox.connect(a.sandboxId, { ...bed.opts, timeoutMs: 600_000 });
    assert.equal(again.sandboxId, a.sandboxId);
    const info = await Sandbox.getInfo(a.sandboxId, bed.opts);
    assert.equal(info.state, "running");
    assert.ok(info.endAt.getTime() - Date.now() > 500_000, "connect set the new timeout");
    assert.equal((await vms()).find((v) => v.name === a.sandboxId)?.state, "running");
  });

  it("setTimeout: when it expires the VM is removed and the sandbox is not found", async () => {
    await b.setTimeout(1500);
    await waitFor("the expired sandbox's VM to go", async () => ((await vms()).some((v) => v.name === b.sandboxId) ? undefined : true));
    await assert.rejects(Sandbox.getInfo(b.sandboxId, bed.opts), NotFoundError);
    assert.equal(await Sandbox.kill(b.sandboxId, bed.opts), false, "kill of a gone sandbox says false");
  });

  it("autoPause: an expired sandbox is paused, not removed, and connect wakes it", async () => {
    const c = await Sandbox.create(bed.image, { ...bed.opts, timeoutMs: 2000, lifecycle: { onTimeout: "pause" } });
    await waitFor("the sandbox to pause on expiry", async () => ((await Sandbox.getInfo(c.sandboxId, bed.opts)).state === "paused" ? true : undefined));
    assert.equal((await vms()).find((v) => v.name === c.sandboxId)?.state, "paused");
    await Sandbox.connect(c.sandboxId, { ...bed.opts, timeoutMs: 600_000 });
    assert.equal((await Sandbox.getInfo(c.sandboxId, bed.opts)).state, "running");
    assert.equal(await Sandbox.kill(c.sandboxId, bed.opts), true);
    assert.equal(
      (await vms()).some((v) => v.name === c.sandboxId),
      false,
    );
  });

  it("fork and snapshots: forks carry the parent's state and metadata; a snapshot restores as a new sandbox, is listed and deleted", async () => {
    const marker = await a.commands.run("echo forked-state > /tmp/marker && cat /tmp/marker");
    assert.equal(marker.stdout, "forked-state\n");
    const [child] = await Sandbox.fork(a.sandboxId, { ...bed.opts, count: 1 });
    assert.ok(child instanceof Sandbox, String(child));
    assert.notEqual(child.sandboxId, a.sandboxId);
    assert.equal((await child.commands.run("cat /tmp/marker")).stdout, "forked-state\n");
    assert.deepEqual((await Sandbox.getInfo(child.sandboxId, bed.opts)).metadata, { suite: "e2b", which: "a" });
    assert.equal((await vms()).find((v) => v.name === child.sandboxId)?.config.sandbox, child.sandboxId);
    assert.equal(await Sandbox.kill(child.sandboxId, bed.opts), true);

    const snap = await Sandbox.createSnapshot(a.sandboxId, bed.opts);
    assert.ok(snap.snapshotId);
    const listed = await Sandbox.listSnapshots({ ...bed.opts, sandboxId: a.sandboxId }).nextItems();
    assert.deepEqual(
      listed.map((x) => x.snapshotId),
      [snap.snapshotId],
    );
    const restored = await Sandbox.create(snap.snapshotId, bed.opts);
    assert.equal((await restored.commands.run("cat /tmp/marker")).stdout, "forked-state\n");
    assert.equal(await restored.kill(), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, bed.opts), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, bed.opts), false);
  });

  it("takes a ready VM from the image's warm pool when one matches", async () => {
    await mustRun(bed.banger(["pool", "set", bed.image, "--size", "1"]));
    await waitFor(
      "the pool to be ready",
      async () => {
        const p = (JSON.parse((await mustRun(bed.banger(["pool", "ls", "--json"]))).stdout) as { pools: { image: string; ready: number; warming: number }[] }).pools.find((x) => x.image === bed.image);
        return p && p.ready === 1 && p.warming === 0 ? true : undefined;
      },
      240_000,
    );
    const asked = Date.now();
    const pooled = await Sandbox.create(bed.image, bed.opts);
    const vm = JSON.parse((await mustRun(bed.banger(["vm", "show", pooled.sandboxId, "--json"]))).stdout) as { createdAt: string; config: { sandbox?: string } };
    assert.ok(Date.parse(vm.createdAt) < asked, `the VM was made before the create (pooled): ${vm.createdAt}`);
    assert.equal(vm.config.sandbox, pooled.sandboxId);
    assert.equal((await pooled.commands.run("hostname")).stdout, `${pooled.sandboxId}\n`);
    assert.equal(await pooled.kill(), true);
    await mustRun(bed.banger(["pool", "set", bed.image, "--size", "0"]));
  });

  it("a wrong or missing key is the SDK's AuthenticationError; an unknown id its NotFoundError", async () => {
    const wrong = { ...bed.opts, apiKey: `e2b_${"0".repeat(40)}` };
    await assert.rejects(Sandbox.list(wrong).nextItems(), AuthenticationError);
    await assert.rejects(Sandbox.create(bed.image, wrong), AuthenticationError);
    await assert.rejects(Sandbox.getInfo(a.sandboxId, wrong), AuthenticationError);
    const res = await fetch(`${bed.opts.apiUrl}/v2/sandboxes`);
    assert.equal(res.status, 401);
    assert.deepEqual(Object.keys((await res.json()) as object).sort(), ["code", "message"]);
    await assert.rejects(Sandbox.getInfo("inotasandbox00000000", bed.opts), NotFoundError);
    await assert.rejects(Sandbox.connect("inotasandbox00000000", bed.opts), NotFoundError);
    await assert.rejects(Sandbox.setTimeout("inotasandbox00000000", 1000, bed.opts), NotFoundError);
  });

  it("banger api key --rotate: the old key stops working at once, the new one works", async () => {
    const rotated = (await mustRun(bed.banger(["api", "key", "--rotate"]))).stdout.trim();
    assert.match(rotated, /^e2b_[0-9a-f]{40}$/);
    assert.notEqual(rotated, bed.opts.apiKey);
    await assert.rejects(Sandbox.list(bed.opts).nextItems(), AuthenticationError);
    bed.opts.apiKey = rotated;
    const env = (await mustRun(bed.banger(["api", "env"]))).stdout;
    assert.match(env, new RegExp(`^export E2B_API_KEY='${rotated}'$`, "m"));
    assert.ok((await Sandbox.list(bed.opts).nextItems()).some((s) => s.sandboxId === a.sandboxId));
  });

  it("expiry survives a daemon restart: a sandbox that expired while no daemon ran is removed at start", async () => {
    await Sandbox.setTimeout(a.sandboxId, 1000, bed.opts); // the rotated key (`a` holds the old one)
    await stopDaemon(bed.home); // VMs keep running without their daemon
    await new Promise((r) => setTimeout(r, 1500));
    // The next command starts a daemon (on a new free port, as BANGER_API_PORT=0 says).
    await waitFor("the expired sandbox's VM to go after the restart", async () => ((await vms()).some((v) => v.name === a.sandboxId) ? undefined : true));
    const info = JSON.parse((await mustRun(bed.banger(["api", "env", "--json"]))).stdout) as { apiUrl: string };
    Object.assign(bed.opts, { apiUrl: info.apiUrl, sandboxUrl: info.apiUrl });
    await assert.rejects(Sandbox.getInfo(a.sandboxId, bed.opts), NotFoundError);
  });
});
