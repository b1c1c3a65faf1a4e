// Firecracker's snapshots, as its swagger (/snapshot/create, /snapshot/load) and
// docs/snapshotting/snapshot-support.md describe them: a paused VM's device state and RAM
// saved to two files, and continued in a FRESH Firecracker process. Disks are not part of a
// Firecracker snapshot (disk/ copies them), and a restored VM reopens every drive at the
// path_on_host it was booted with; the driver boots with a path relative to Firecracker's
// working directory (the runtime dir's root.disk link, or "/rootfs" in a jail), so a restored
// VM opens ITS disk, never the snapshotted VM's. The tap and the vsock socket are swapped at
// load (network_overrides, vsock_override). RAM is mem_backend "File": Firecracker maps it
// MAP_PRIVATE (copy-on-write), so a restore copies nothing and the file must never change.
import { chown, link, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, cancelled, integrity } from "../util/errors.ts";
import type { JailerSpec } from "./types.ts";

/** The snapshot's device state and guest RAM, as the vmm interface names them. */
export const SNAPSHOT_STATE = "vmstate";
export const SNAPSHOT_MEMORY = "memory";
/** Writing or mapping GiBs of RAM takes longer than an ordinary API call. */
const SNAPSHOT_TIMEOUT_MS = 10 * 60_000;
const MIB = 1024 * 1024;
const DAMAGED_HINT = "the snapshot is damaged; remove it and take a new one";

/** A call to this VM's Firecracker API (fcCall bound to its socket). */
export type FcApi = <T = unknown>(method: string, path: string, body?: unknown, timeoutMs?: number) => Promise<T>;

/** Bytes a file takes on disk (RAM files are sparse: never-touched pages take none). */
async function onDisk(path: string): Promise<number> {
  const st = await stat(path);
  return st.blocks * 512;
}

/**
 * Saves a paused VM into dir/vmstate and dir/memory (a Full snapshot; Firecracker truncates
 * existing files). Under the jailer Firecracker can only write inside its chroot: the files
 * are written there and moved out by hard link (same filesystem, as the jail's disk is).
 */
export async function createSnapshot(api: FcApi, dir: string, jailRoot: string | undefined, signal?: AbortSignal): Promise<{ stateBytes: number; memoryBytes: number }> {
  if (signal?.aborted) throw cancelled();
  const info = await api<{ state?: string }>("GET", "/");
  if (info?.state !== "Paused") {
    throw new BangerError(ErrorCode.Failed, `cannot snapshot a VM that is not paused (Firecracker says ${JSON.stringify(info?.state ?? "unknown")})`, "pause the VM first");
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const out = { state: join(dir, SNAPSHOT_STATE), memory: join(dir, SNAPSHOT_MEMORY) };
  const seen = jailRoot ? { state: `/${SNAPSHOT_STATE}`, memory: `/${SNAPSHOT_MEMORY}` } : out;
  const inJail = jailRoot ? [join(jailRoot, SNAPSHOT_STATE), join(jailRoot, SNAPSHOT_MEMORY)] : [];
  try {
    await api("PUT", "/snapshot/create", { snapshot_type: "Full", snapshot_path: seen.state, mem_file_path: seen.memory }, SNAPSHOT_TIMEOUT_MS);
    if (jailRoot) {
      for (const [from, to] of [
        [join(jailRoot, SNAPSHOT_STATE), out.state],
        [join(jailRoot, SNAPSHOT_MEMORY), out.memory],
      ] as const) {
        await rm(to, { force: true });
        await link(from, to);
      }
    }
    if (signal?.aborted) throw cancelled();
    return { stateBytes: await onDisk(out.state), memoryBytes: await onDisk(out.memory) };
  } catch (err) {
    // Half-written files are not a snapshot.
    for (const f of [out.state, out.memory]) await rm(f, { force: true });
    throw err;
  } finally {
    for (const f of inJail) await rm(f, { force: true });
  }
}

/** Refuses a snapshot whose files are missing or truncated before any process starts (one clear line). */
export async function checkSnapshotFiles(dir: string, memoryMib: number): Promise<void> {
  const state = await stat(join(dir, SNAPSHOT_STATE)).catch(() => undefined);
  const memory = await stat(join(dir, SNAPSHOT_MEMORY)).catch(() => undefined);
  if (!state?.isFile()) throw integrity(`snapshot ${dir} has no device state file (${SNAPSHOT_STATE})`, DAMAGED_HINT);
  if (!memory?.isFile()) throw integrity(`snapshot ${dir} has no memory file (${SNAPSHOT_MEMORY})`, DAMAGED_HINT);
  if (state.size === 0) throw integrity(`snapshot ${dir}: its device state file is empty`, DAMAGED_HINT);
  const want = memoryMib * MIB;
  if (memory.size !== want) {
    throw integrity(
      `snapshot ${dir}: its memory file holds ${memory.size} bytes, a ${memoryMib} MiB VM needs ${want}`,
      "the snapshot is truncated, or the VM asks for other memory than the snapshotted one had",
    );
  }
}

/** The snapshot files as Firecracker will open them: host paths, or hard links into the jail (owned by its uid:gid). */
export async function stageSnapshotFiles(dir: string, jail?: { root: string; spec: JailerSpec }): Promise<{ state: string; memory: string }> {
  if (!jail) return { state: join(dir, SNAPSHOT_STATE), memory: join(dir, SNAPSHOT_MEMORY) };
  for (const name of [SNAPSHOT_STATE, SNAPSHOT_MEMORY]) {
    const dest = join(jail.root, name);
    await rm(dest, { force: true });
    await link(join(dir, name), dest);
    await chown(dest, jail.spec.uid, jail.spec.gid);
  }
  return { state: `/${SNAPSHOT_STATE}`, memory: `/${SNAPSHOT_MEMORY}` };
}

export interface LoadRequest {
  files: { state: string; memory: string };
  /** The restored VM's tap, for the snapshot's interface ifaceId. */
  net?: { ifaceId: string; tap: string };
  /** The vsock socket as Firecracker sees it (the new runtime dir's, or the jail's). */
  vsock: string;
  /** A drive path the restored VM may open: relative to its own runtime dir, or inside its jail. */
  drivePathIsOwn: (pathOnHost: string) => boolean;
}

/** The PUT /snapshot/load body: the VM stays paused until its devices are checked. */
export function snapshotLoadBody(req: LoadRequest): Record<string, unknown> {
  return {
    snapshot_path: req.files.state,
    mem_backend: { backend_type: "File", backend_path: req.files.memory },
    ...(req.net ? { network_overrides: [{ iface_id: req.net.ifaceId, host_dev_name: req.net.tap }] } : {}),
    vsock_override: { uds_path: req.vsock },
    resume_vm: false,
  };
}

interface RestoredConfig {
  drives?: Array<{ drive_id?: string; path_on_host?: string }>;
  "network-interfaces"?: Array<{ iface_id?: string; host_dev_name?: string }>;
}

/**
 * Loads the snapshot into a fresh Firecracker (only logger and metrics configured), checks
 * what it restored (GET /vm/config) while the guest is still paused, then resumes it. A
 * failed load ends Firecracker (its docs: the process may be in an invalid state).
 */
export async function loadSnapshot(api: FcApi, req: LoadRequest): Promise<void> {
  await api("PUT", "/snapshot/load", snapshotLoadBody(req), SNAPSHOT_TIMEOUT_MS);
  const config = await api<RestoredConfig>("GET", "/vm/config");
  for (const d of config?.drives ?? []) {
    if (typeof d.path_on_host === "string" && !req.drivePathIsOwn(d.path_on_host)) {
      // An absolute path would be the snapshotted VM's own disk: two VMs writing one disk.
      throw integrity(`snapshot's drive ${d.drive_id ?? "?"} names ${d.path_on_host}, not a disk of the restored VM`, "the snapshot was taken by an older banger; take a new one");
    }
  }
  const ifaces = config?.["network-interfaces"] ?? [];
  if (!req.net && ifaces.length > 0) {
    throw new BangerError(
      ErrorCode.InvalidArgument,
      `the snapshot has a network interface (${ifaces.map((i) => i.iface_id).join(", ")}) but the restored VM has no tap`,
      "restore it with networking on",
    );
  }
  if (req.net && !ifaces.some((i) => i.iface_id === req.net?.ifaceId)) {
    throw new BangerError(ErrorCode.InvalidArgument, "the snapshot has no network interface but the restored VM has a tap", "restore it with networking off");
  }
  await api("PATCH", "/vm", { state: "Resumed" });
}
