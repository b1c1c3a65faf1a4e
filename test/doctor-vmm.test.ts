// `banger doctor` says which VMM new VMs get here and why, in its text and its --json, and
// fails when the configured VMM cannot run. The CLI runs with a PATH the test controls:
// `node` only, or `node` and a stand-in `firecracker` (no firecracker binary exists on this
// host; the stand-in answers --version as Firecracker does). Whether /dev/kvm opens is the
// host's real answer, except in the last test, which injects it: a mock by necessity, as KVM
// cannot be made usable here.
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { resolvePaths } from "../src/config/index.ts";
import { runDoctor } from "../src/doctor/index.ts";
import { kvmUsable, probeFirecracker, probeQemu } from "../src/host/index.ts";
import { chooseVmm } from "../src/vmm/index.ts";
import { effectiveValue } from "../src/config/index.ts";
import { makeTempHome, mustRun, runBanger } from "./helpers.ts";

interface Report {
  checks: { name: string; status: string; detail: string; fix?: string; neededToBoot: boolean }[];
  vmm?: { name: string; reason: string };
  canBoot: boolean;
}

describe("doctor: the VMM new VMs get", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);
  const nodeOnly = join(home, "node-bin");
  const withFirecracker = join(home, "fc-bin");
  mkdirSync(nodeOnly);
  mkdirSync(withFirecracker);
  symlinkSync(process.execPath, join(nodeOnly, "node"));
  const fake = join(withFirecracker, "firecracker");
  writeFileSync(fake, '#!/bin/sh\n[ "$1" = --version ] && printf "Firecracker v1.7.0\\n\\n"\n', { mode: 0o755 });
  const doctor = async (args: string[], path: string, env: NodeJS.ProcessEnv = {}) => runBanger(["doctor", ...args], { home, env: { BANGER_VMM: undefined, ...env, PATH: path } });
  const vmmCheck = (r: Report) => r.checks.find((c) => c.name === "vmm");

  it("unset, without firecracker on PATH: qemu, and why", async () => {
    const json = JSON.parse((await doctor(["--json"], nodeOnly)).stdout) as Report;
    assert.deepEqual(vmmCheck(json), { name: "vmm", status: "pass", detail: "new VMs get qemu (vmm unset; firecracker not on PATH)", neededToBoot: true });
    assert.deepEqual(json.vmm, { name: "qemu", reason: "vmm unset; firecracker not on PATH" });
    const text = await doctor([], nodeOnly);
    assert.match(text.stdout, /^ok {4}vmm +new VMs get qemu \(vmm unset; firecracker not on PATH\)$/m);
  });

  it("unset, with firecracker on PATH: firecracker when /dev/kvm opens, else qemu saying so", async () => {
    const json = JSON.parse((await doctor(["--json"], `${withFirecracker}:${nodeOnly}`)).stdout) as Report;
    const expected = (await kvmUsable())
      ? { name: "firecracker", reason: `vmm unset; firecracker 1.7.0 at ${fake} and /dev/kvm usable` }
      : { name: "qemu", reason: "vmm unset; firecracker is on PATH but /dev/kvm cannot be opened read-write" };
    assert.deepEqual(json.vmm, expected);
    assert.equal(vmmCheck(json)?.detail, `new VMs get ${expected.name} (${expected.reason})`);
  });

  it("a configured VMM wins; one that cannot run here fails doctor with what to do", async () => {
    await mustRun(runBanger(["config", "set", "vmm", "qemu"], { home }));
    const fromFile = JSON.parse((await doctor(["--json"], `${withFirecracker}:${nodeOnly}`)).stdout) as Report;
    assert.deepEqual(fromFile.vmm, { name: "qemu", reason: "set in the config file" });
    await mustRun(runBanger(["config", "unset", "vmm"], { home }));

    const refused = await doctor(["--json"], nodeOnly, { BANGER_VMM: "firecracker" });
    assert.equal(refused.code, 1, "no VM can be created");
    const report = JSON.parse(refused.stdout) as Report;
    assert.equal(report.canBoot, false);
    assert.deepEqual(vmmCheck(report), {
      name: "vmm",
      status: "fail",
      neededToBoot: true,
      detail: "new VMs are refused: vmm is firecracker (BANGER_VMM=firecracker) but firecracker is not on PATH",
      fix: "put a Firecracker release binary on PATH (no Debian package ships one), or unset BANGER_VMM",
    });
    assert.equal(report.checks.find((c) => c.name === "firecracker")?.neededToBoot, true, "firecracker is no longer optional");
    const text = await doctor([], nodeOnly, { BANGER_VMM: "firecracker" });
    assert.match(text.stdout, /^FAIL {2}vmm +new VMs are refused: vmm is firecracker/m);
    assert.match(text.stdout, /^ +fix: put a Firecracker release binary on PATH .*, or unset BANGER_VMM$/m);
  });

  it("with firecracker chosen, qemu-system-x86_64 is optional and disks are cloned for firecracker", async () => {
    const paths = resolvePaths({ BANGER_HOME: home });
    // KVM injected as usable (it cannot be here); the firecracker binary is the stand-in, found on PATH.
    const report = await runDoctor(paths, {
      vmm: (config) =>
        chooseVmm(effectiveValue(config, "vmm", {}), {
          firecracker: () => probeFirecracker({ PATH: withFirecracker }),
          qemu: () => probeQemu({ PATH: nodeOnly }),
          kvmUsable: async () => true,
        }),
      cloneStrategy: async (_dir, vmm) => ({ strategy: vmm === "firecracker" ? "reflink" : "qcow2", detail: `for ${vmm}` }),
    });
    assert.deepEqual(report.vmm, { name: "firecracker", reason: `vmm unset; firecracker 1.7.0 at ${fake} and /dev/kvm usable` });
    assert.equal(report.checks.find((c) => c.name === "qemu-system-x86_64")?.neededToBoot, false);
    assert.equal(report.checks.find((c) => c.name === "disk-clone")?.detail, "reflink: for firecracker", "doctor asks for the chosen VMM's clone strategy");
  });
});
