// The real probes, from the modules that own them (host, disk, guest, vmm), loaded only when
// doctor runs. Here rather than in cli/ so the CLI reaches none of those modules' internals
// (guest/ is the daemon's side of the agent protocol); tests pass their own probes instead.
import { mkdirSync } from "node:fs";
import { type Config, effectiveValue, type Paths } from "../config/index.ts";
import type { DoctorProbes } from "./index.ts";

export async function hostProbes(paths: Paths): Promise<DoctorProbes> {
  const [{ probeKvm }, { chooseCloneStrategy }, { agentBinary }, { chooseVmm }] = await Promise.all([
    import("../host/index.ts"),
    import("../disk/index.ts"),
    import("../guest/index.ts"),
    import("../vmm/index.ts"),
  ]);
  return {
    // The choice a daemon started from this environment makes for a new VM.
    vmm: (config: Config) => chooseVmm(effectiveValue(config, "vmm")),
    kvmSpeed: async () => {
      const probe = await probeKvm({ cacheDir: paths.hostCacheDir });
      return { fast: probe.fast, detail: probe.fast ? `fast (${probe.detail})` : `slow or unusable: ${probe.detail}; VMs use QEMU TCG` };
    },
    cloneStrategy: async (dir, vmm) => {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const choice = await chooseCloneStrategy(vmm, dir);
      return { strategy: choice.strategy, detail: choice.reason };
    },
    agentBinary: () => {
      try {
        return agentBinary();
      } catch {
        return undefined;
      }
    },
  };
}
