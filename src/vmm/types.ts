// The driver interface every VMM implements, and what a VM is made of.
import type { Duplex } from "node:stream";
import type { Accel } from "../host/index.ts";
import type { Progress } from "../util/progress.ts";

export type VmmName = "qemu" | "firecracker";

/** The guest agent's vsock port, and its virtio-serial port name (docs/decisions.md: one stream per VM). */
export const AGENT_VSOCK_PORT = 52;
export const AGENT_PORT_NAME = "banger.agent";

export interface JailerSpec {
  /** The jailer binary (default: `jailer` on PATH). */
  jailerPath?: string;
  /** The firecracker binary the jailer copies into the chroot. */
  execFile: string;
  /** Alphanumeric and '-', at most 64 characters. */
  id: string;
  uid: number;
  gid: number;
  chrootBaseDir?: string;
  cgroupVersion?: 1 | 2;
  netns?: string;
  // No --new-pid-ns or --daemonize: both change the pid, and banger tracks the pid it spawned
  // (the jailer execs Firecracker in place without them).
}

export interface VmSpec {
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line. */
  cmdline: string;
  rootDisk: { path: string; format: "raw" | "qcow2"; readOnly?: boolean };
  /**
   * Further disks after the root one (the workspace slot: daemon/workspace-disk.ts). `serial`
   * is how the guest finds each (/sys/block/vdX/serial): virtio-mmio probe order is not argv order.
   */
  extraDisks?: ExtraDisk[];
  cpus: number;
  memoryMib: number;
  /** Sockets, pid file, console log all live here; the VMM's command line names it (adopt checks that). */
  runtimeDir: string;
  /** Networking (optional): an existing tap device and the guest's MAC. */
  tap?: string;
  mac?: string;
  /** Guest CID for vsock (>= 3); used by firecracker and by qemu with vhost-vsock. */
  vsockCid?: number;
  /**
   * qemu only: guest RAM lives in this file (memory-backend-file, MAP_SHARED), on a tmpfs
   * (config's vmMemoryFile), so saveSnapshot can copy it sparsely. Created by QEMU, removed by
   * the handle's cleanup (stop, kill, cleanupDeadVm). Unset: anonymous RAM, no snapshots.
   */
  memoryFile?: string;
  /**
   * qemu under TCG only: the translation cache it may fill, MiB (`-accel tcg,tb-size=`; config
   * qemu.tcg_cache). Unset: QEMU's default (1 GiB or an eighth of the host's RAM).
   */
  tcgCacheMib?: number;
  /** qemu only: force an accelerator; default BANGER_ACCEL, else the host probe's verdict. */
  accel?: Accel;
  /** firecracker only: run it under the jailer. */
  jailer?: JailerSpec;
}

export interface ExtraDisk {
  path: string;
  /** qcow2: a restored VM's slot, an overlay on its snapshot's copy (QEMU only). */
  format: "raw" | "qcow2";
  /** [a-z0-9-], at most 20 bytes (virtio-blk's serial field). */
  serial: string;
}

export interface StartOptions {
  signal?: AbortSignal;
  progress?: Progress;
  /** How long the VMM gets to come up (its control socket answering). Default 15 s. */
  timeoutMs?: number;
}

export type VmRunState = "running" | "paused" | "stopped" | "other";

/** How stop() ended the VM: the guest powered off, the VMM was told to quit, or it was killed. */
export type StopOutcome = "powerdown" | "quit" | "killed" | "not-running";

/**
 * What a watched VMM reports on its own: it ended (`stopped` when the guest or the host asked,
 * `crashed` when it died), the guest was paused by the VMM (QEMU stops it on a host disk
 * full: `nospace`) or continued.
 */
export type VmmEvent = { kind: "ended"; state: "stopped" | "crashed"; reason: string } | { kind: "paused"; reason: string; nospace: boolean } | { kind: "resumed" };

export interface AgentStreamOptions {
  /** Keep retrying the connection this long (the guest may still be booting). Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface SaveSnapshotOptions {
  signal?: AbortSignal;
  /**
   * Runs once the device state is saved (the VMM has flushed and let go of its disks, so they
   * can be copied), while guest RAM may still be being copied; saveSnapshot waits for both.
   */
  afterState?: () => Promise<void>;
  /**
   * dir/memory already exists at its final size (a stand-in that a waiting restore's VMM maps,
   * PendingRestore): the RAM is written into it without ever changing its size or inode.
   */
  inPlace?: boolean;
}

export interface VmHandle {
  readonly driver: VmmName;
  readonly pid: number;
  readonly runtimeDir: string;
  /**
   * The guest's serial console for the current boot, written by the VMM with O_APPEND and
   * capped by a watcher while the VMM lives (console.ts: older output moves to `<path>.1`).
   * Read it with readConsoleTail/readConsoleFrom, never whole.
   */
  readonly consoleLogPath: string;
  /** The VMM process is alive. */
  isRunning(): boolean;
  /** The VMM's view of the guest (QMP query-status / Firecracker GET /). */
  status(): Promise<VmRunState>;
  /** Asks the guest to power off; after timeoutMs tells the VMM to quit, then kills it. Removes the sockets and pid file. */
  stop(timeoutMs?: number): Promise<StopOutcome>;
  /** SIGKILL now; waits for the exit and removes the sockets and pid file. */
  kill(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Guest must already be paused (pause()); writes dir/vmstate (device state) and dir/memory (guest RAM, sparse). Does not resume. */
  saveSnapshot(dir: string, opts?: SaveSnapshotOptions): Promise<{ stateBytes: number; memoryBytes: number }>;
  /** Resolves when the VMM process has exited. */
  waitExit(signal?: AbortSignal): Promise<void>;
  /**
   * Reports the VMM's own changes to `listener` until the returned function is called: its
   * end (once, with why, within ~200 ms; a recycled pid counts as ended) and, for QEMU,
   * pauses and resumes from its QMP events.
   */
  watch(listener: (event: VmmEvent) => void): () => void;
  /** A connected byte stream to the guest agent (vsock port 52 or the banger.agent serial port). */
  agentStream(opts?: AgentStreamOptions): Promise<Duplex>;
  /**
   * The agent stream is a virtio-serial port: one byte stream that outlives connections,
   * so a new connection may first read what an earlier one left (connectAgent's `serial`).
   */
  readonly agentOverSerial: boolean;
}

/** A restore whose VMM is up and waiting for its snapshot's device state (VmmDriver.prestartRestore). */
export interface PendingRestore {
  readonly pid: number;
  /** Checks the now complete snapshot, loads its device state and continues the guest. */
  finish(): Promise<VmHandle>;
  /** Ends the waiting VMM and removes what it left in the runtime dir. */
  cancel(): Promise<void>;
}

export interface VmmDriver {
  readonly name: VmmName;
  start(spec: VmSpec, opts?: StartOptions): Promise<VmHandle>;
  /**
   * A NEW VMM continuing the snapshot: spec = the new VM (own runtime dir, own disk overlay, own
   * tap/MAC); same cpus/memory/devices/kernel as the snapshotted VM; RAM mapped copy-on-write
   * (MAP_PRIVATE) from snapshotDir/memory, never copied. Resolves with the guest running.
   */
  restore(spec: VmSpec, snapshotDir: string, opts?: StartOptions): Promise<VmHandle>;
  /**
   * restore() in two steps, so the VMM's own start overlaps whatever writes the snapshot (a
   * fork's): resolves once a VMM for `spec` is up and waiting. From then on the snapshot's memory
   * file (and the disk chain the spec names) must keep their inodes and size; their contents may
   * still be written, in place, until finish() (the VMM reads neither before). Optional: a driver
   * without it is restored with restore() once the snapshot is complete.
   */
  prestartRestore?(spec: VmSpec, snapshotDir: string, opts?: StartOptions): Promise<PendingRestore>;
  /** Re-attaches to a VMM started earlier (e.g. before a daemon restart); undefined when it is gone. */
  adopt(runtimeDir: string): Promise<VmHandle | undefined>;
}
