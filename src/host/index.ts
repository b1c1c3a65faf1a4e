// Package host owns probes of what this machine can do for VMs: whether KVM is there and
// fast (or TCG must be used), whether /dev/vhost-vsock exists, which copy-on-write clone
// methods work in a directory, whether /dev/kvm opens read-write (what Firecracker needs), and
// whether the firecracker and qemu binaries are installed.
//
// It does not print anything (doctor does) and does not decide policy beyond "which
// accelerator" (which VMM a new VM gets is vmm's select.ts); drivers, vmm and doctor call
// these and explain the results.
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { detectCloneStrategies } from "../disk/index.ts";
import type { StrategyReport } from "../disk/index.ts";
import { run, which } from "../util/exec.ts";

export { chooseAccel, forcedAccel, kvmUsable, probeFirmware, probeKvm } from "./kvm.ts";
export type { Accel, KvmProbe, ProbeKvmOptions } from "./kvm.ts";

export const VHOST_VSOCK_DEVICE = "/dev/vhost-vsock";

/** /dev/vhost-vsock exists and this process can open it (QEMU then offers a real vsock). */
export async function hasVhostVsock(): Promise<boolean> {
  return access(VHOST_VSOCK_DEVICE, constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
}

/** Copy-on-write clone methods usable for disks created in `dir` (see disk.chooseCloneStrategy). */
export function cloneStrategies(dir: string): Promise<StrategyReport[]> {
  return detectCloneStrategies(dir);
}

export interface BinaryProbe {
  found: boolean;
  path?: string;
  version?: string;
  detail: string;
}

/** Is a `firecracker` binary on PATH, and which version? (No Debian package ships one.) */
export async function probeFirecracker(env: NodeJS.ProcessEnv = process.env): Promise<BinaryProbe> {
  const path = which("firecracker", env);
  if (!path) return { found: false, detail: "firecracker not on PATH (download a release from the Firecracker project; banger uses qemu meanwhile)" };
  const res = await run([path, "--version"], { timeoutMs: 5000 }).catch(() => undefined);
  const version = res?.stdout.match(/Firecracker v?([0-9][^\s]*)/i)?.[1];
  return { found: true, path, version, detail: version ? `firecracker ${version} at ${path}` : `firecracker at ${path} (version unknown)` };
}

/** Is qemu-system-x86_64 on PATH, and which version? */
export async function probeQemu(env: NodeJS.ProcessEnv = process.env): Promise<BinaryProbe> {
  const path = which("qemu-system-x86_64", env);
  if (!path) return { found: false, detail: "qemu-system-x86_64 not found (apt-get install -y qemu-system-x86)" };
  const res = await run([path, "--version"], { timeoutMs: 5000 }).catch(() => undefined);
  const version = res?.stdout.match(/version ([0-9][^\s]*)/)?.[1];
  return { found: true, path, version, detail: version ? `qemu ${version} at ${path}` : `qemu at ${path} (version unknown)` };
}
