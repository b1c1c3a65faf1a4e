// The workspace slot: a VM created with `workspaceSlot` gets a second disk, an empty sparse
// raw file in its directory, attached from boot (so a VM made ahead of time, e.g. for a
// pool, can take a workspace later). `vm.workspace.put` fills it: the CLI streams the same
// tar it would give the agent (workspace/: same files, .git state and secret rules), the
// daemon unpacks it with the hardened rootfs tar reader into a staging directory it owns,
// writes an ext4 of it INTO the slot file with `mkfs.ext4 -d` (rootfs fillExt4: owned by the
// guest user, names never reach a shell or debugfs), and the agent mounts it at the
// destination. Its change times are the host's clock: `vm run` takes its "unchanged" mark
// once the guest's clock has passed them (cli/run-probe.ts guestMarkAfter). Under TCG this beats the guest kernel extracting thousands of files.
//
// The one rule choosing (putWorkspace): an unfilled slot, an agent that can mount disks and a
// daemon running as root (as installed) take the disk; anything else (no slot: an older VM or one made without it; a slot already
// filled: `vm workspace` onto a VM that has one) takes the tar through the agent. A filled
// slot is mounted again whenever the VM boots (remountWorkspace).
import { lstatSync, statfsSync } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { AgentClient } from "../guest/index.ts";
import { extractRootfsTar, fillExt4 } from "../rootfs/index.ts";
import type { CallContext } from "../rpc/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { WORKSPACE_STAGING_PREFIX, memoryStagingPrefix } from "../util/scratch.ts";
import type { ExtraDisk } from "../vmm/index.ts";
import type { DaemonContext } from "./context.ts";
import { inputStream } from "./streams.ts";
import { putFiles } from "./vm-io.ts";
import { getVm, runningAgent } from "./vms.ts";

/** The slot's size: sparse, so it costs the host what the guest writes into it. */
export const WORKSPACE_SLOT_BYTES = 16 * 1024 ** 3;
const SLOT_FILE = "workspace.img";
const SLOT_SERIAL = "banger-workspace";

/** What a VM's record keeps about its slot (config.workspaceSlot). */
export interface WorkspaceSlot {
  path: string;
  serial: string;
  /** Absent: raw. qcow2: a restored VM's filled slot, an overlay on its snapshot's copy (workspace-snapshot.ts). */
  format?: "raw" | "qcow2";
  /** Where the filled slot is mounted in the guest; absent while empty. */
  mountedAt?: string;
}

/** Creates the empty slot file in the VM's directory. */
export async function makeWorkspaceSlot(vmDir: string): Promise<WorkspaceSlot> {
  const path = join(vmDir, SLOT_FILE);
  const fh = await open(path, "wx", 0o600);
  try {
    await fh.truncate(WORKSPACE_SLOT_BYTES);
  } finally {
    await fh.close();
  }
  return { path, serial: SLOT_SERIAL };
}

export function workspaceSlotOf(config: Record<string, unknown>): WorkspaceSlot | undefined {
  return config.workspaceSlot as WorkspaceSlot | undefined;
}

/** The VMM's view of a VM's slot: its extra disks. */
export function slotDisks(config: Record<string, unknown>): ExtraDisk[] {
  const slot = workspaceSlotOf(config);
  return slot ? [{ path: slot.path, format: slot.format ?? "raw", serial: slot.serial }] : [];
}

export interface PutWorkspaceResult {
  files: number;
  bytes: number;
  /** How it got there: the workspace disk, or the tar through the agent. */
  via: "disk" | "agent";
}

/** Puts the call's input (the workspace tar) at `dest` in the guest, owned by `owner` (see the header for the rule). */
export async function putWorkspace(
  ctx: DaemonContext,
  name: string,
  dest: string,
  owner: { uid: number; gid: number },
  announcedBytes: number | undefined,
  call: CallContext,
): Promise<PutWorkspaceResult> {
  if (!dest.startsWith("/")) throw invalidArgument(`guest workspace ${JSON.stringify(dest)} must be an absolute path`);
  const agent = await runningAgent(ctx, name, call.signal);
  // One fill at a time per VM: the second one sees the slot taken and uses the agent.
  return ctx.locks.run(`workspace-slot:${name}`, async () => {
    const slot = workspaceSlotOf(getVm(ctx, name).config);
    // Root: the staging files carry the guest user as owner, so no name reaches debugfs (rootfs fillExt4).
    if (!slot || slot.mountedAt !== undefined || slot.format === "qcow2" || !agent.info.features.includes("disk.mount") || process.getuid?.() !== 0) {
      return { ...(await putFiles(agent, dest, owner, call)), via: "agent" as const };
    }
    const started = Date.now();
    const counts = await fillSlot(slot, dest, owner, announcedBytes, agent, call);
    ctx.log.info("workspace disk filled", { vm: name, files: counts.files, bytes: counts.bytes, ms: Date.now() - started, ...counts.ms });
    const vm = getVm(ctx, name);
    ctx.store.updateVm(name, { config: { ...vm.config, workspaceSlot: { ...slot, mountedAt: dest } } });
    return { files: counts.files, bytes: counts.bytes, via: "disk" as const };
  });
}

/** Largest workspace staged in memory (tmpfs), and the most of tmpfs's free space it may take. */
const MEMORY_STAGING_MAX = 2 * 1024 ** 3;
const MEMORY_STAGING_SHARE = 0.25;
const TMPFS_MAGIC = 0x01021994;

/**
 * Where the tar is unpacked before mkfs copies it: /dev/shm when the caller's announced size
 * fits (creating 10k files on a busy ext4 host costs seconds, on tmpfs a fraction; the
 * staging lives for the seconds of the fill), else the VM's directory. With tmpfs the
 * announcement is also the bound: a tar holding more is refused, not let into memory.
 */
async function makeStaging(slot: WorkspaceSlot, announced: number | undefined): Promise<{ dir: string; maxBytes: number }> {
  const shm = "/dev/shm";
  if (announced !== undefined && announced <= MEMORY_STAGING_MAX) {
    const fs = (() => {
      try {
        return statfsSync(shm);
      } catch {
        return undefined;
      }
    })();
    if (fs?.type === TMPFS_MAGIC && announced <= fs.bavail * fs.bsize * MEMORY_STAGING_SHARE) {
      return { dir: await mkdtemp(join(shm, memoryStagingPrefix(process.pid))), maxBytes: announced };
    }
  }
  return { dir: await mkdtemp(join(slot.path, "..", WORKSPACE_STAGING_PREFIX)), maxBytes: WORKSPACE_SLOT_BYTES };
}

/** Fills the slot and mounts it; with how long each step took (the daemon's log says, for tuning). */
async function fillSlot(
  slot: WorkspaceSlot,
  dest: string,
  owner: { uid: number; gid: number },
  announced: number | undefined,
  agent: AgentClient,
  call: CallContext,
): Promise<{ files: number; bytes: number; ms: Record<string, number | string> }> {
  const { dir: staging, maxBytes } = await makeStaging(slot, announced);
  let t = Date.now();
  const lap = () => {
    const ms = Date.now() - t;
    t += ms;
    return ms;
  };
  try {
    const tree = await extractRootfsTar(inputStream(call), join(staging, "tree"), { signal: call.signal, maxBytes });
    const unpackMs = lap();
    let bytes = 0;
    for (const e of tree.entries.values()) if (e.type === "file") bytes += lstatSync(join(tree.dir, e.path)).size;
    // QEMU has the file open (cache=writeback): its reads go through the same page cache.
    await fillExt4(tree, slot.path, { owner, label: "workspace", workDir: staging, signal: call.signal, progress: call.progress });
    const mkfsMs = lap();
    await agent.mountDisk(slot.serial, dest);
    return { files: tree.entries.size, bytes, ms: { staging: staging.startsWith("/dev/shm/") ? "memory" : "vm dir", unpackMs, mkfsMs, mountMs: lap() } };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** After a boot: a filled slot is mounted where it was (the guest's own mount table does not outlive it). */
export async function remountWorkspace(config: Record<string, unknown>, agent: AgentClient): Promise<void> {
  const slot = workspaceSlotOf(config);
  if (slot?.mountedAt !== undefined) await agent.mountDisk(slot.serial, slot.mountedAt);
}
