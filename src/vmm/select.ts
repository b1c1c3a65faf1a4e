// Which VMM a new VM gets. An explicit setting (BANGER_VMM, else the config file's `vmm`)
// wins, and is refused with a hint when it cannot run here. Unset: Firecracker when its
// binary is on PATH and KVM is usable (/dev/kvm opens read-write; Firecracker has no
// software emulation), else QEMU (KVM when fast, TCG otherwise). Usable, not host/kvm.ts's
// "fast": that probe times real-mode code, which nested KVM emulates slowly and QEMU's
// firmware runs, while Firecracker boots the kernel straight in 64-bit mode. A VM keeps the
// VMM it was created with (its record's `vmm`): this decides for new VMs only.
import type { EffectiveValue } from "../config/index.ts";
import { kvmUsable, probeFirecracker, probeQemu, type BinaryProbe } from "../host/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { installHint } from "../util/exec.ts";
import type { VmmName } from "./types.ts";

export interface VmmChoice {
  vmm: VmmName;
  /** Why, in words: "firecracker not on PATH", "set in the config file". */
  reason: string;
  /** Only for an explicit setting: why the chosen VMM cannot run here (create refuses, doctor fails). */
  problem?: BangerError;
}

/** What the choice looks at; tests replace them (KVM cannot be made usable on a host without it). */
export interface VmmProbes {
  firecracker: () => Promise<BinaryProbe>;
  qemu: () => Promise<BinaryProbe>;
  kvmUsable: () => Promise<boolean>;
}

export const HOST_VMM_PROBES: VmmProbes = { firecracker: () => probeFirecracker(), qemu: () => probeQemu(), kvmUsable };

/** `setting` is config's effectiveValue(config, "vmm"): env > file > unset. */
export async function chooseVmm(setting: EffectiveValue, probes: VmmProbes = HOST_VMM_PROBES): Promise<VmmChoice> {
  if (setting.value === null || setting.value === undefined) return chooseForHost(probes);
  const named = setting.source === "env" ? `${setting.env}=${String(setting.value)}` : "set in the config file";
  const undo = setting.source === "env" ? `unset ${setting.env}` : "`banger config unset vmm` to let banger pick";
  if (setting.value !== "qemu" && setting.value !== "firecracker") {
    // Only the environment can hold another value: `config set` refuses it.
    const problem = new BangerError(ErrorCode.InvalidArgument, `vmm ${JSON.stringify(setting.value)} (${named}) is neither qemu nor firecracker`, undo);
    return { vmm: "qemu", reason: named, problem };
  }
  const vmm: VmmName = setting.value;
  const binary = await (vmm === "qemu" ? probes.qemu() : probes.firecracker());
  if (!binary.found) {
    const tool = vmm === "qemu" ? "qemu-system-x86_64" : "firecracker";
    const install = vmm === "qemu" ? installHint(tool) : "put a Firecracker release binary on PATH (no Debian package ships one)";
    return { vmm, reason: named, problem: new BangerError(ErrorCode.MissingDependency, `vmm is ${vmm} (${named}) but ${tool} is not on PATH`, `${install}, or ${undo}`) };
  }
  if (vmm === "firecracker" && !(await probes.kvmUsable())) {
    const problem = new BangerError(
      ErrorCode.Unavailable,
      `vmm is firecracker (${named}) but /dev/kvm cannot be opened read-write (Firecracker needs KVM)`,
      `load kvm and run bangerd as root or in the kvm group, or ${undo}`,
    );
    return { vmm, reason: named, problem };
  }
  return { vmm, reason: named };
}

async function chooseForHost(probes: VmmProbes): Promise<VmmChoice> {
  const firecracker = await probes.firecracker();
  if (!firecracker.found) return { vmm: "qemu", reason: "vmm unset; firecracker not on PATH" };
  if (!(await probes.kvmUsable())) return { vmm: "qemu", reason: "vmm unset; firecracker is on PATH but /dev/kvm cannot be opened read-write" };
  return { vmm: "firecracker", reason: `vmm unset; ${firecracker.detail} and /dev/kvm usable` };
}
