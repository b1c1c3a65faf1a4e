// Which VMM a new VM gets. The binaries are looked up for real: a `firecracker` on PATH is
// a stand-in script answering --version as Firecracker does (no firecracker binary exists
// on this host: no package ships one). KVM's usability is the one injected probe: a mock by
// necessity, as /dev/kvm cannot be made to open here; the host's own answer is checked too.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { effectiveValue } from "../config/index.ts";
import { kvmUsable, probeFirecracker, probeQemu } from "../host/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { which } from "../util/exec.ts";
import { chooseVmm, HOST_VMM_PROBES, type VmmProbes } from "./index.ts";

const home = makeTempHome();
after(() => home.cleanup());
const withFirecracker = join(home.home, "fc-bin");
const empty = join(home.home, "empty-bin");
mkdirSync(withFirecracker);
mkdirSync(empty);
writeFileSync(join(withFirecracker, "firecracker"), '#!/bin/sh\n[ "$1" = --version ] && printf "Firecracker v1.7.0\\n\\n"\n', { mode: 0o755 });

/** PATH holds `firecracker` or not; qemu-system-x86_64 is the host's (or absent); KVM is as told. */
function probes(opts: { firecracker: boolean; qemu?: boolean; kvm: boolean }): VmmProbes {
  return {
    firecracker: () => probeFirecracker({ PATH: opts.firecracker ? withFirecracker : empty }),
    qemu: () => probeQemu(opts.qemu === false ? { PATH: empty } : process.env),
    kvmUsable: async () => opts.kvm,
  };
}

const unset = effectiveValue({}, "vmm", {});
const inFile = (vmm: string) => effectiveValue({ vmm }, "vmm", {});
const inEnv = (vmm: string) => effectiveValue({ vmm: "qemu" }, "vmm", { BANGER_VMM: vmm });
const hasQemu = which("qemu-system-x86_64") !== undefined;

describe("the VMM a new VM gets", () => {
  test("unset: firecracker when it is on PATH and KVM is usable", async () => {
    const choice = await chooseVmm(unset, probes({ firecracker: true, kvm: true }));
    assert.deepEqual(choice, { vmm: "firecracker", reason: `vmm unset; firecracker 1.7.0 at ${join(withFirecracker, "firecracker")} and /dev/kvm usable` });
  });

  test("unset: qemu when firecracker is missing, or KVM is not usable, saying which", async () => {
    assert.deepEqual(await chooseVmm(unset, probes({ firecracker: false, kvm: true })), { vmm: "qemu", reason: "vmm unset; firecracker not on PATH" });
    assert.deepEqual(await chooseVmm(unset, probes({ firecracker: true, kvm: false })), {
      vmm: "qemu",
      reason: "vmm unset; firecracker is on PATH but /dev/kvm cannot be opened read-write",
    });
  });

  test("unset, on this host (real probes): qemu unless firecracker and /dev/kvm are both here", async () => {
    if (!existsSync("/dev/kvm")) assert.equal(await kvmUsable(), false, "no /dev/kvm: not usable");
    const choice = await chooseVmm(unset, HOST_VMM_PROBES);
    const firecrackerHere = which("firecracker") !== undefined && (await kvmUsable());
    assert.equal(choice.vmm, firecrackerHere ? "firecracker" : "qemu", choice.reason);
    assert.equal(choice.problem, undefined, "an unset vmm is never refused");
  });

  test("an explicit setting wins over what the host offers", { skip: !hasQemu && "no qemu-system-x86_64 here (its refusal is tested below)" }, async () => {
    assert.deepEqual(await chooseVmm(inFile("qemu"), probes({ firecracker: true, kvm: true })), { vmm: "qemu", reason: "set in the config file" });
    assert.deepEqual(await chooseVmm(inEnv("firecracker"), probes({ firecracker: true, kvm: true })), { vmm: "firecracker", reason: "BANGER_VMM=firecracker" });
    assert.equal(inEnv("firecracker").source, "env", "the environment wins over the file's qemu");
  });

  test("an explicit firecracker that cannot run here is refused, with what to do", async () => {
    const missing = await chooseVmm(inEnv("firecracker"), probes({ firecracker: false, kvm: true }));
    assert.ok(missing.problem instanceof BangerError);
    assert.equal(missing.problem.code, ErrorCode.MissingDependency);
    assert.equal(
      errorLine(missing.problem),
      "vmm is firecracker (BANGER_VMM=firecracker) but firecracker is not on PATH (put a Firecracker release binary on PATH (no Debian package ships one), or unset BANGER_VMM)",
    );
    const noKvm = await chooseVmm(inFile("firecracker"), probes({ firecracker: true, kvm: false }));
    assert.equal(noKvm.problem?.code, ErrorCode.Unavailable);
    assert.equal(
      errorLine(noKvm.problem),
      "vmm is firecracker (set in the config file) but /dev/kvm cannot be opened read-write (Firecracker needs KVM) (load kvm and run bangerd as root or in the kvm group, or `banger config unset vmm` to let banger pick)",
    );
  });

  test("an explicit qemu without qemu-system-x86_64 is refused with the package to install", async () => {
    const choice = await chooseVmm(inFile("qemu"), probes({ firecracker: true, qemu: false, kvm: true }));
    assert.equal(choice.vmm, "qemu", "firecracker is not picked instead of what was asked");
    assert.equal(choice.problem?.code, ErrorCode.MissingDependency);
    assert.match(
      errorLine(choice.problem),
      /^vmm is qemu \(set in the config file\) but qemu-system-x86_64 is not on PATH \(install it: apt-get install -y qemu-system-x86, or `banger config unset vmm` to let banger pick\)$/,
    );
  });

  test("BANGER_VMM naming neither VMM is a usage error (config set refuses it already)", async () => {
    const choice = await chooseVmm(inEnv("xen"), probes({ firecracker: true, kvm: true }));
    assert.equal(choice.problem?.code, ErrorCode.InvalidArgument);
    assert.equal(errorLine(choice.problem), 'vmm "xen" (BANGER_VMM=xen) is neither qemu nor firecracker (unset BANGER_VMM)');
  });
});
