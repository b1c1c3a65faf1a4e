// QEMU's snapshots (QEMU 7.2: no file: migration URI, no mapped-ram). A VM boots with its RAM
// in a shared file on a tmpfs (VmSpec.memoryFile); a snapshot of the paused VM is its device
// state, saved by migrating with `x-ignore-shared` (RAM in a shared file is not sent) to a Unix
// socket this process listens on and writes to dir/vmstate, plus a sparse copy of the RAM file
// to dir/memory. A restore starts a NEW QEMU with the same machine and devices, its RAM
// dir/memory mapped MAP_PRIVATE (copy-on-write: nothing copied), `-incoming defer`, streams
// vmstate into `migrate-incoming`, and continues the guest (`cont`: the state was saved paused,
// so QEMU keeps it paused). A restored VM's RAM is private, so a snapshot of it carries the RAM
// in vmstate (x-ignore-shared skips only shared RAM) over a hard link of the snapshot's memory
// it maps: bigger and restored by copy, but correct. The snapshot files must never change while
// a VM maps them: pages it has not copied yet would change under its guest.
import { createReadStream, createWriteStream } from "node:fs";
import { link, mkdir, open, rename, rm } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { BangerError, ErrorCode, cancelled, integrity } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import { DAMAGED_HINT, SNAPSHOT_MEMORY, SNAPSHOT_STATE, checkSnapshotFiles, onDisk } from "./snapshot-files.ts";
import { checkSocketPath, logTail, VMM_LOG, type VmmState } from "./process.ts";
import { QmpClient, qmpCommand } from "./qmp.ts";
import type { PendingRestore, SaveSnapshotOptions, StartOptions, VmHandle, VmSpec } from "./types.ts";

/**
 * The sockets the device state goes through, in the VM's runtime dir (no longer than its
 * other sockets' names, so a runtime dir that fits them fits these).
 */
export const MIGRATE_OUT_SOCKET = "mig-out.sock";
export const MIGRATE_IN_SOCKET = "mig-in.sock";
/** Saving or loading a device state that carries a restored VM's RAM takes longer than a QMP call. */
const MIGRATION_TIMEOUT_MS = 10 * 60_000;
/** QEMU's default migration bandwidth is 32 MiB/s; the stream only goes to a local file. */
const MAX_BANDWIDTH = 64 * 1024 ** 3;
/** A QEMU migration stream starts with this magic ("QEVM"). */
const QEMU_STATE_MAGIC = Buffer.from("QEVM");

interface QemuVm {
  runtimeDir: string;
  qmpSocket: string;
  state: Pick<VmmState, "memoryFile" | "privateMemory">;
}

/** Writes a paused VM's dir/vmstate and dir/memory; leaves nothing half-written on failure. */
export async function saveQemuSnapshot(vm: QemuVm, dir: string, opts: SaveSnapshotOptions = {}): Promise<{ stateBytes: number; memoryBytes: number }> {
  const { signal, afterState, inPlace } = opts;
  if (signal?.aborted) throw cancelled();
  const { memoryFile, privateMemory } = vm.state;
  if (!memoryFile && !privateMemory) {
    throw new BangerError(ErrorCode.Unavailable, "this VM's RAM is not in a file (it was started without one), so it cannot be snapshotted", "stop and start the VM to give it one");
  }
  // One QMP connection per command: QEMU serves one client at a time, and the daemon's own
  // status checks must not wait behind a long save.
  const qmp: Qmp = (command, args) => qmpCommand(vm.qmpSocket, command, args);
  const out = { state: join(dir, SNAPSHOT_STATE), memory: join(dir, SNAPSHOT_MEMORY) };
  try {
    const { status } = await qmp<{ status?: string }>("query-status");
    if (status !== "paused" && status !== "postmigrate") {
      throw new BangerError(ErrorCode.Failed, `cannot snapshot a VM that is not paused (QEMU says ${JSON.stringify(status ?? "unknown")})`, "pause the VM first");
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // The RAM copy runs beside the device state's migration and what follows it (the caller's
    // disk copy): the paused guest changes neither, and the pause lasts the longest of them,
    // not their sum. Both are waited for, so a failure never leaves a copy writing.
    const copies = await Promise.allSettled([
      saveState(vm.qmpSocket, vm.runtimeDir, out.state, signal).then(() => afterState?.()),
      memoryFile ? (inPlace ? fillInPlace : sparseCopy)(memoryFile, out.memory, signal) : linkOrCopy(privateMemory!, out.memory, signal),
    ]);
    for (const c of copies) if (c.status === "rejected") throw c.reason;
    return { stateBytes: await onDisk(out.state), memoryBytes: await onDisk(out.memory) };
  } catch (err) {
    for (const f of [out.state, ...(inPlace ? [] : [out.memory])]) await rm(f, { force: true });
    throw err;
  }
}

type Qmp = <T = unknown>(command: string, args?: Record<string, unknown>) => Promise<T>;

/** cp finds the data extents (SEEK_DATA/SEEK_HOLE) and writes only those. */
async function sparseCopy(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  await runChecked(["cp", "--sparse=auto", "--reflink=auto", src, dest], { signal, timeoutMs: MIGRATION_TIMEOUT_MS });
}

/**
 * Into the existing `dest` of the same size, never truncating it: a VMM that opens it meanwhile
 * must find its full size (QEMU refuses a smaller file). `dest` is all holes, so the source's
 * all-zero blocks are skipped rather than written; reading the source's holes costs ~20 ms per
 * 512 MiB of tmpfs. A fork waits for this copy: two `dd`s on halves copy ~1.3x as fast alone
 * but no faster in a fork (the device state is saved beside it, on 2 cores), and sendfile of
 * the data extents (SEEK_DATA) ~1.1x: neither is worth its cost.
 */
async function fillInPlace(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  await runChecked(["dd", `if=${src}`, `of=${dest}`, "bs=256K", "conv=notrunc,sparse", "status=none"], { signal, timeoutMs: MIGRATION_TIMEOUT_MS });
}

/** The snapshot's memory never changes, so a snapshot of a VM restored from it can share it. */
async function linkOrCopy(src: string, dest: string, signal?: AbortSignal): Promise<void> {
  await rm(dest, { force: true });
  await link(src, dest).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EXDEV") throw err;
    return sparseCopy(src, dest, signal);
  });
}

/** Migrates the device state (without shared RAM) to a socket we listen on, into `path`. */
async function saveState(qmpSocket: string, runtimeDir: string, path: string, signal?: AbortSignal): Promise<void> {
  const qmp: Qmp = (command, args) => qmpCommand(qmpSocket, command, args);
  const sock = checkSocketPath(join(runtimeDir, MIGRATE_OUT_SOCKET));
  const partial = `${path}.partial`;
  await rm(sock, { force: true });
  const server = createServer();
  // One connection: QEMU's. Its bytes go to the file until QEMU closes it (migration done).
  const received = new Promise<void>((resolve, reject) => {
    server.once("connection", (conn) => {
      server.close();
      pipeline(conn, createWriteStream(partial, { mode: 0o600 })).then(resolve, reject);
    });
  });
  received.catch(() => undefined); // awaited below; a failure before then is the migration's
  try {
    await listen(server, sock);
    // The three commands that start it on one connection (each connection is a greeting and a
    // capabilities round trip); the polls that follow take one each, so the daemon's status
    // checks get in between during a long save.
    const setup = await QmpClient.connect(qmpSocket);
    try {
      await setup.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
      await setup.execute("migrate-set-parameters", { "max-bandwidth": MAX_BANDWIDTH });
      await setup.execute("migrate", { uri: `unix:${sock}` });
    } finally {
      setup.close();
    }
    await waitMigration(qmp, "saving the device state", signal);
    await Promise.race([received, sleep(30_000).then(() => Promise.reject(new BangerError(ErrorCode.Timeout, "QEMU never finished writing the device state")))]);
    await rename(partial, path);
  } finally {
    server.close();
    await rm(sock, { force: true });
    await rm(partial, { force: true });
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.removeListener("error", reject);
      resolve();
    });
  });
}

/** Polls query-migrate until it completes; cancels it on abort or timeout. */
async function waitMigration(qmp: Qmp, what: string, signal?: AbortSignal, timeoutMs = MIGRATION_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // A device state without RAM moves in tens of ms: poll closely at first, then every 10 ms.
  for (let polls = 0; ; polls++) {
    const res = await qmp<{ status?: string; "error-desc"?: string }>("query-migrate");
    if (res.status === "completed") return;
    if (res.status === "failed" || res.status === "cancelled") {
      throw new BangerError(ErrorCode.Failed, `${what} failed: ${res["error-desc"] ?? res.status}`, "see the VM's vmm.log");
    }
    const stop = signal?.aborted ? cancelled() : Date.now() > deadline ? new BangerError(ErrorCode.Timeout, `${what} did not finish in ${timeoutMs / 1000} s`) : undefined;
    if (stop) {
      await qmp("migrate_cancel").catch(() => undefined);
      throw stop;
    }
    await sleep(polls < 20 ? 2 : 10);
  }
}

/**
 * Refuses a snapshot QEMU cannot restore, before anything starts, in one line: files missing,
 * the memory file not the VM's size (truncated), the state not a QEMU migration stream.
 */
export async function checkQemuSnapshot(dir: string, memoryMib: number): Promise<void> {
  await checkSnapshotFiles(dir, memoryMib);
  const fh = await open(join(dir, SNAPSHOT_STATE), "r");
  try {
    const head = Buffer.alloc(QEMU_STATE_MAGIC.length);
    await fh.read(head, 0, head.length, 0);
    if (!head.equals(QEMU_STATE_MAGIC)) throw integrity(`snapshot ${dir}: its device state is not QEMU's (no QEVM header)`, DAMAGED_HINT);
  } finally {
    await fh.close();
  }
}

type Launch = (
  spec: VmSpec,
  opts: StartOptions | undefined,
  extra: { memory: { path: string; shared: boolean }; incoming: true },
  then: (pid: number, qmp: QmpClient) => Promise<void>,
) => Promise<VmHandle>;

/** A new QEMU continuing the snapshot in `dir` (qemuDriver.restore). */
export async function restoreQemu(spec: VmSpec, dir: string, opts: StartOptions | undefined, launch: Launch): Promise<VmHandle> {
  await checkQemuSnapshot(dir, spec.memoryMib);
  return (await prestartQemuRestore(spec, dir, opts, launch)).finish();
}

/**
 * A QEMU started for the snapshot in `dir` that waits, `-incoming defer`, until finish()
 * (qemuDriver.prestartRestore). It maps dir/memory MAP_PRIVATE at start but touches no page of
 * it before the device state loads, so pages written into that same file until then are the
 * ones the guest sees; its disks are opened inactive (as on any incoming migration) and their
 * metadata read again when the load completes.
 */
export async function prestartQemuRestore(spec: VmSpec, dir: string, opts: StartOptions | undefined, launch: Launch): Promise<PendingRestore> {
  let up!: (pid: number) => void;
  const started = new Promise<number>((resolve) => (up = resolve));
  let go!: (proceed: boolean) => void;
  const proceed = new Promise<boolean>((resolve) => (go = resolve));
  const memory = { path: join(dir, SNAPSHOT_MEMORY), shared: false };
  const handle = launch(spec, opts, { memory, incoming: true }, async (pid, qmp) => {
    up(pid);
    if (!(await proceed)) throw cancelled();
    await checkQemuSnapshot(dir, spec.memoryMib);
    await loadState(spec.runtimeDir, qmp, join(dir, SNAPSHOT_STATE), opts?.signal);
  });
  handle.catch(() => undefined); // awaited by finish() or cancel(); a failed start rejects the race below
  const pid = await Promise.race([started, handle.then(() => 0)]);
  return {
    pid,
    finish: () => {
      go(true);
      return handle;
    },
    cancel: async () => {
      go(false);
      await handle.then(
        (h) => h.kill(),
        () => undefined,
      );
    },
  };
}

/**
 * Streams the device state into a QEMU started with `-incoming defer`, then continues the
 * guest; all on the QMP connection that found QEMU ready (nobody else talks to a VM being restored).
 */
async function loadState(runtimeDir: string, client: QmpClient, statePath: string, signal?: AbortSignal): Promise<void> {
  const sock = checkSocketPath(join(runtimeDir, MIGRATE_IN_SOCKET));
  await rm(sock, { force: true });
  const qmp: Qmp = (command, args) => client.execute(command, args);
  try {
    await qmp("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    await qmp("migrate-incoming", { uri: `unix:${sock}` });
    const streamError = await new Promise<unknown>((resolve) => {
      const conn = connect(sock);
      conn.once("error", resolve);
      conn.once("connect", () => pipeline(createReadStream(statePath), conn).then(() => resolve(undefined), resolve));
    });
    // QEMU closes its end once it has read the whole state, which can beat our own end of the
    // stream ("Premature close"): then QEMU's status says whether the load went through.
    await waitMigration(qmp, "loading the snapshot's device state", signal, streamError ? 5000 : undefined).catch((err: unknown) => {
      throw streamError ?? err;
    });
    await qmp("cont");
  } catch (err) {
    // A failed load ends QEMU; its log says why.
    const why = await logTail(join(runtimeDir, VMM_LOG));
    throw new BangerError(ErrorCode.Failed, `restoring the snapshot failed: ${err instanceof Error ? err.message : String(err)}${why}`, "see the VM's vmm.log");
  } finally {
    await rm(sock, { force: true });
  }
}
