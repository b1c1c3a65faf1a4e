// Every crash point of an install (replace.ts steps 1-5), made on disk as a killed daemon
// leaves it, then recovered as the next start does: the old or the new one is complete, and
// the store row names the one on disk.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { ensureDirs, resolvePaths } from "../config/index.ts";
import { openStore } from "../store/index.ts";
import type { DaemonContext } from "./context.ts";
import { install, recoverSwaps, refuseIfUsed, type ImageRow } from "./replace.ts";

const bed = makeTempHome();
after(() => bed.cleanup());
let n = 0;

function freshCtx(): DaemonContext {
  const paths = resolvePaths({ BANGER_HOME: join(bed.home, `r${++n}`) });
  ensureDirs(paths);
  return { paths, store: openStore(paths.db) } as unknown as DaemonContext;
}

const row = (digest: string): ImageRow => ({ name: "img", source: "test", digest, kernelRef: "k", distro: "", arch: "x86_64", sizeBytes: 3, config: {} });

/** An installed "old" image and a built "new" one in tmp, as before step 1. */
function oldAndNew(ctx: DaemonContext): { dest: string; fresh: string } {
  const dest = join(ctx.paths.imagesDir, "img");
  mkdirSync(dest);
  writeFileSync(join(dest, "rootfs.ext4"), "old");
  ctx.store.putImage(row("sha256:old"));
  const fresh = join(ctx.paths.tmpDir, "image-img-abcdef");
  mkdirSync(fresh);
  writeFileSync(join(fresh, "rootfs.ext4"), "new");
  return { dest, fresh };
}

function intent(ctx: DaemonContext, fresh: string): void {
  writeFileSync(join(ctx.paths.imagesDir, ".swap-img.json"), JSON.stringify({ kind: "image", name: "img", fresh, row: row("sha256:new") }));
}

/** After recovery: exactly the image dir, holding `which`, and a row that says so. */
function assertSettled(ctx: DaemonContext, which: "old" | "new"): void {
  assert.deepEqual(readdirSync(ctx.paths.imagesDir), ["img"]);
  assert.equal(readFileSync(join(ctx.paths.imagesDir, "img", "rootfs.ext4"), "utf8"), which);
  assert.equal(ctx.store.getImage("img")?.digest, `sha256:${which}`);
}

/** The disk (and store) as a daemon killed after `steps` of install()'s steps 1-4 leaves them. */
function killedAfter(ctx: DaemonContext, steps: number): string {
  const { dest, fresh } = oldAndNew(ctx);
  intent(ctx, fresh);
  if (steps >= 2) renameSync(dest, join(ctx.paths.imagesDir, ".replaced-img"));
  if (steps >= 3) renameSync(fresh, dest);
  if (steps >= 4) ctx.store.putImage(row("sha256:new"));
  return fresh;
}

test("killed after the intent, before the old one moved aside: undone, the old one stays", async () => {
  const ctx = freshCtx();
  const fresh = killedAfter(ctx, 1);
  assert.deepEqual(await recoverSwaps(ctx), { undone: ["image img"], finished: [] });
  assertSettled(ctx, "old");
  assert.equal(existsSync(fresh), false);
});

test("killed with the old one aside and the new one not in: the old one is put back", async () => {
  const ctx = freshCtx();
  killedAfter(ctx, 2);
  await recoverSwaps(ctx);
  assertSettled(ctx, "old");
});

test("killed with the new one in but not recorded: finished, the row names the new one", async () => {
  const ctx = freshCtx();
  killedAfter(ctx, 3);
  assert.deepEqual(await recoverSwaps(ctx), { undone: [], finished: ["image img"] });
  assertSettled(ctx, "new");
});

test("killed after recording, before the old one was removed: finished", async () => {
  const ctx = freshCtx();
  killedAfter(ctx, 4);
  await recoverSwaps(ctx);
  assertSettled(ctx, "new");
});

test("a first install killed after its rename: recorded at the next start, not left without a row", async () => {
  const ctx = freshCtx();
  const fresh = join(ctx.paths.tmpDir, "image-img-abcdef");
  mkdirSync(fresh);
  writeFileSync(join(fresh, "rootfs.ext4"), "new");
  intent(ctx, fresh);
  renameSync(fresh, join(ctx.paths.imagesDir, "img"));
  await recoverSwaps(ctx);
  assertSettled(ctx, "new");
});

test("an unreadable intent is undone, never followed to a path outside the root", async () => {
  const ctx = freshCtx();
  const { fresh } = oldAndNew(ctx);
  writeFileSync(join(ctx.paths.imagesDir, ".swap-img.json"), JSON.stringify({ kind: "image", name: "img", fresh: "/etc", row: row("sha256:new") }));
  await recoverSwaps(ctx);
  assertSettled(ctx, "old");
  assert.ok(existsSync("/etc/hostname") || existsSync("/etc/passwd"));
  assert.ok(existsSync(fresh), "left for the sweep: the intent did not name it");
});

test("install: a failure moving the new one in puts the old one back and leaves no intent", async () => {
  const ctx = freshCtx();
  oldAndNew(ctx);
  await assert.rejects(install(ctx, "image", "img", join(ctx.paths.tmpDir, "missing"), row("sha256:new")), /ENOENT/);
  assertSettled(ctx, "old");
});

test("install: replaces and records", async () => {
  const ctx = freshCtx();
  const { fresh } = oldAndNew(ctx);
  await install(ctx, "image", "img", fresh, row("sha256:new"));
  assertSettled(ctx, "new");
});

test("an image a warm pool uses is refused naming the pool and how to empty it, not its VMs' internal names", () => {
  const ctx = freshCtx();
  const vm = { image: "img", kernel: "k", vmm: "qemu", cpus: 1, memoryBytes: 512 * 1024 ** 2, diskBytes: 0, pid: null, ip: null, error: null, config: {} };
  ctx.store.insertVm({ ...vm, name: "pool-1a2b", id: "a", state: "running", pool: "img" });
  assert.throws(
    () => refuseIfUsed(ctx, "image", "img", "remove"),
    (err: Error & { hint?: string }) => {
      assert.equal(err.message, "cannot remove image img: it is used by the warm pool of img (their disks are overlays of its rootfs.ext4)");
      assert.equal(err.hint, "empty the pool first: banger pool set img --size 0");
      return true;
    },
  );
  ctx.store.insertVm({ ...vm, name: "mine", id: "b", state: "stopped" });
  assert.throws(
    () => refuseIfUsed(ctx, "image", "img", "remove"),
    (err: Error & { hint?: string }) => {
      assert.match(err.message, /it is used by vm mine and the warm pool of img /);
      assert.equal(err.hint, "remove those VMs first, and banger pool set img --size 0");
      return true;
    },
  );
  ctx.store.close();
});

test("an image or kernel a snapshot uses is refused, naming the snapshot", () => {
  const ctx = freshCtx();
  const snap = { sourceVm: "dev", image: "img", kernel: "k", vmm: "qemu", cpus: 1, memoryBytes: 512 * 1024 ** 2, net: "full" as const, netPeer: false, hasNic: false };
  const files = { diskFile: "disk.qcow2", diskFormat: "qcow2" as const, stateBytes: 1, memoryFileBytes: 1, diskBytes: 1, stateSha256: "a", diskSha256: "b", pauseMs: 1, workspace: null };
  ctx.store.snapshots.insert({ ...snap, ...files, name: "s1", internal: false });
  assert.throws(() => refuseIfUsed(ctx, "image", "img", "remove"), /^BangerError: cannot remove image img: snapshot s1 uses it \(their disks are overlays of its rootfs\.ext4\)$/);
  assert.throws(() => refuseIfUsed(ctx, "kernel", "k", "replace"), /cannot replace kernel k: snapshot s1 uses it/);
  assert.doesNotThrow(() => refuseIfUsed(ctx, "image", "other", "remove"));
  ctx.store.close();
});
