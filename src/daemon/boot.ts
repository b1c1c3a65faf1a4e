// Turning a VM record into what the VMM driver boots: kernel, initramfs, command line
// (the agent reads its settings from there, networking included), root disk, sizes,
// runtime directory, and the VM's tap and MAC when it has a NIC.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { agentBinary } from "../guest/index.ts";
import { bootInitramfs } from "../kernel/index.ts";
import { SHM_DIR, kernelDir, tcgCacheMib, vmMemoryFile } from "../config/index.ts";
import type { VmRecord } from "../store/index.ts";
import { notFound } from "../util/errors.ts";
import type { VmSpec } from "../vmm/index.ts";
import type { DaemonContext } from "./context.ts";
import type { VmNic } from "./network.ts";
import { slotDisks } from "./workspace-disk.ts";

export async function bootSpec(
  ctx: DaemonContext,
  vm: Pick<VmRecord, "name" | "id" | "kernel" | "cpus" | "memoryBytes" | "vmm" | "config">,
  disk: { path: string; format: "raw" | "qcow2" },
  runtimeDir: string,
  nic?: VmNic,
): Promise<VmSpec> {
  const dir = kernelDir(ctx.paths, vm.kernel);
  const kernelPath = join(dir, "vmlinux");
  if (!existsSync(kernelPath)) throw notFound(`kernel ${vm.kernel} files (${kernelPath})`, `re-import or re-pull the kernel: banger kernel rm ${vm.kernel} && banger kernel pull ${vm.kernel}`);
  const initrd = join(dir, "initrd.img");
  const hasInitrd = existsSync(initrd);
  const cmdline = [
    "console=ttyS0",
    "reboot=k",
    "panic=-1",
    "quiet",
    "root=/dev/vda",
    "rw",
    ...(hasInitrd ? ["rdinit=/init", "banger.root=/dev/vda"] : ["init=/sbin/banger-agent"]),
    `banger.hostname=${vm.name}`,
    ...(nic?.kernelParams ?? []),
  ].join(" ");
  // The guest runs the agent this daemon ships, whatever agent the kernel was imported with.
  const initrdPath = hasInitrd ? await bootInitramfs({ initrd, agentPath: agentBinary(), cacheDir: ctx.paths.initrdCacheDir, kernelName: vm.kernel }) : undefined;
  return {
    kernelPath,
    ...(initrdPath ? { initrdPath } : {}),
    cmdline,
    rootDisk: { path: disk.path, format: disk.format },
    extraDisks: slotDisks(vm.config),
    cpus: vm.cpus,
    memoryMib: vm.memoryBytes / 1024 ** 2, // the store keeps whole MiB: the VMMs' unit
    runtimeDir,
    ...(nic ? { tap: nic.tap, mac: nic.mac } : {}),
    // QEMU keeps the guest's RAM in a tmpfs file, so the VM can be snapshotted and forked.
    ...(vm.vmm === "qemu" && existsSync(SHM_DIR) ? { memoryFile: vmMemoryFile(ctx.paths, vm.id) } : {}),
    // Bounds what QEMU's translation cache grows to over a long-lived VM's life (config/keys.ts).
    ...(vm.vmm === "qemu" ? { tcgCacheMib: tcgCacheMib(ctx.config()) } : {}),
  };
}
