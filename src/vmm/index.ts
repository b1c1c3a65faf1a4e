// Package vmm owns the VMM drivers: which one a new VM gets (select.ts: the `vmm` setting,
// else Firecracker when it is on PATH and KVM is usable, else QEMU), starting a VM from a
// VmSpec under QEMU (microvm + QMP) or Firecracker (REST API over its Unix socket,
// optionally jailed), controlling it (status, pause, resume, stop, kill), handing out a
// byte stream to the guest agent (dial.ts: the agent's Unix socket or Firecracker's hybrid
// vsock; types.ts: its vsock port and serial name), re-adopting VMMs that outlived a daemon
// restart, and watching each one (handle.watch: its end with why, from its exit status,
// QEMU's QMP events or a panic line on the console; QEMU's pauses on host I/O errors), and
// snapshots (handle.saveSnapshot of a paused VM: its device state and RAM in a directory;
// driver.restore: a new VMM continuing one, its RAM mapped copy-on-write, or in two steps,
// prestartRestore then finish, so the VMM starts while the snapshot is still written; QEMU's in
// qemu-snapshot.ts, with its RAM in a tmpfs file while it runs so a snapshot can copy it). VMM
// processes run detached; everything they need at run time (sockets, pid and state files,
// console and VMM logs) lives in the spec's runtime directory. The console log is bounded (console.ts: rotated at 1 MiB while
// a handle watches the VMM) and read by its tail, never whole.
//
// It does not own disks (disk, a snapshot's disk too), where snapshots and RAM files live
// (config), networking (net: it only receives a tap name), the agent protocol spoken over the
// stream (guest), or VM records and state (daemon/store).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { firecrackerDriver } from "./firecracker.ts";
import { STATE_FILE } from "./process.ts";
export { cleanupDeadVm, killUnrecordedVmms } from "./process.ts";
export { findPanicLine } from "./ending.ts";
export { CONSOLE_LOG_CAP, consoleLogPath, readConsoleFrom, readConsoleTail } from "./console.ts";
import { qemuDriver } from "./qemu.ts";
import type { VmHandle, VmmDriver, VmmName } from "./types.ts";

export { AGENT_PORT_NAME, AGENT_VSOCK_PORT } from "./types.ts";
export { dialFirecrackerVsock, dialUnix, type DialOptions } from "./dial.ts";
export type {
  AgentStreamOptions,
  ExtraDisk,
  JailerSpec,
  PendingRestore,
  StartOptions,
  StopOutcome,
  VmHandle,
  VmmDriver,
  VmmName,
  VmRunState,
  VmSpec,
  VmmEvent,
} from "./types.ts";
export { buildQemuArgv, qemuDriver, qemuPaths, resolveQemuOptions } from "./qemu.ts";
export { checkQemuSnapshot } from "./qemu-snapshot.ts";
/** The files a snapshot directory holds for the VMM: device state and guest memory. */
export { SNAPSHOT_MEMORY, SNAPSHOT_STATE } from "./snapshot-files.ts";
export type { AgentChannel, QemuOptions } from "./qemu.ts";
export { buildJailerArgv, firecrackerDriver, firecrackerPaths, jailerChrootDir } from "./firecracker.ts";
export { QmpClient, qmpCommand } from "./qmp.ts";
export { chooseVmm, HOST_VMM_PROBES } from "./select.ts";
export type { VmmChoice, VmmProbes } from "./select.ts";

const DRIVERS: Record<VmmName, VmmDriver> = { qemu: qemuDriver, firecracker: firecrackerDriver };

export function getDriver(name: string): VmmDriver {
  if (name !== "qemu" && name !== "firecracker") throw invalidArgument(`unknown VMM ${JSON.stringify(name)}`, "use qemu or firecracker");
  return DRIVERS[name];
}

/** Adopts whatever VMM the runtime dir records (daemon start-up reconciliation). */
export async function adoptVm(runtimeDir: string): Promise<VmHandle | undefined> {
  let driver: unknown;
  try {
    driver = (JSON.parse(await readFile(join(runtimeDir, STATE_FILE), "utf8")) as { driver?: unknown }).driver;
  } catch {
    return undefined;
  }
  return driver === "qemu" || driver === "firecracker" ? DRIVERS[driver].adopt(runtimeDir) : undefined;
}
