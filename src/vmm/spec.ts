// Checks a VmSpec before any process starts, so mistakes are one clear line, not a VMM crash.
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { invalidArgument, notFound } from "../util/errors.ts";
import type { VmSpec, VmmName } from "./types.ts";

const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const TAP_PATTERN = /^[a-zA-Z0-9_.-]{1,15}$/;

export async function validateSpec(spec: VmSpec, driver: VmmName): Promise<void> {
  if (!isAbsolute(spec.runtimeDir)) throw invalidArgument(`runtime dir must be an absolute path: ${spec.runtimeDir}`);
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 32) throw invalidArgument(`cpus must be 1-32, got ${spec.cpus}`);
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < 64 || spec.memoryMib > 1024 * 1024) {
    throw invalidArgument(`memory must be at least 64 MiB, got ${spec.memoryMib}`);
  }
  if (spec.cmdline.includes("\n")) throw invalidArgument("kernel command line must be one line");
  if (spec.tap !== undefined && !TAP_PATTERN.test(spec.tap)) throw invalidArgument(`invalid tap device name ${JSON.stringify(spec.tap)}`);
  // QEMU running as root would silently create a missing tap, outside the net module's care.
  if (spec.tap !== undefined && !existsSync(`/sys/class/net/${spec.tap}`)) {
    throw notFound(`tap device ${spec.tap}`, "taps are created by banger's network setup before the VM starts");
  }
  if (spec.mac !== undefined && !MAC_PATTERN.test(spec.mac)) throw invalidArgument(`invalid MAC address ${JSON.stringify(spec.mac)}`);
  if (spec.vsockCid !== undefined && (!Number.isInteger(spec.vsockCid) || spec.vsockCid < 3 || spec.vsockCid > 0xfffffffe)) {
    throw invalidArgument(`vsock CID must be an integer >= 3, got ${spec.vsockCid}`);
  }
  if (driver === "firecracker" && spec.rootDisk.format !== "raw") {
    throw invalidArgument("firecracker needs a raw root disk, not qcow2", "clone the image with the reflink or sparse-copy strategy");
  }
  await mustBeFile(spec.kernelPath, "kernel");
  if (spec.initrdPath) await mustBeFile(spec.initrdPath, "initrd");
  await mustBeFile(spec.rootDisk.path, "root disk");
  for (const extra of spec.extraDisks ?? []) {
    if (driver === "firecracker") throw invalidArgument("firecracker VMs take no extra disks yet", "create the VM without a workspace slot");
    if (!/^[a-z0-9-]{1,20}$/.test(extra.serial)) throw invalidArgument(`invalid disk serial ${JSON.stringify(extra.serial)}`);
    await mustBeFile(extra.path, "extra disk");
  }
}

async function mustBeFile(path: string, what: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw notFound(`${what} ${path}`);
  if (!st.isFile() && !st.isBlockDevice()) throw invalidArgument(`${what} ${path} is not a file`);
}
