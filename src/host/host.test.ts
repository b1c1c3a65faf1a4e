import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { chooseAccel, cloneStrategies, forcedAccel, hasVhostVsock, probeFirecracker, probeFirmware, probeKvm, probeQemu } from "./index.ts";

const home = makeTempHome();
after(() => home.cleanup());

describe("host probes", () => {
  test("BANGER_ACCEL forces the accelerator without probing", async () => {
    assert.equal(forcedAccel({ BANGER_ACCEL: "TCG" }), "tcg");
    assert.equal(forcedAccel({ BANGER_ACCEL: "xen" }), undefined);
    const probe = await probeKvm({ env: { BANGER_ACCEL: "kvm" } });
    assert.equal(probe.fast, true);
    assert.equal(probe.forced, "kvm");
    assert.match(probe.detail, /BANGER_ACCEL/);
    assert.deepEqual(await chooseAccel({ env: { BANGER_ACCEL: "tcg" } }), { accel: "tcg", reason: "forced by BANGER_ACCEL=tcg" });
  });

  test("the KVM probe times a real tiny guest and caches its verdict", async () => {
    const cacheDir = join(home.home, "host");
    const probe = await probeKvm({ env: {}, cacheDir });
    assert.equal(probe.present, existsSync("/dev/kvm"));
    assert.ok(probe.detail.length > 0);
    if (probe.present && probe.accessible) {
      assert.equal(typeof probe.kvmMs, "number", "the guest ran (or timed out) under KVM");
      const cached = JSON.parse(await readFile(join(cacheDir, "kvm-probe.json"), "utf8"));
      assert.equal(cached.probe.fast, probe.fast);
      const again = await probeKvm({ env: {}, cacheDir });
      assert.equal(again.fast, probe.fast);
      assert.match(again.detail, /\(cached\)$/);
    }
  });

  test("the probe firmware puts its program at the reset vector of a 64 KiB image", () => {
    const fw = probeFirmware();
    assert.equal(fw.length, 65536);
    assert.equal(fw[0xfff0], 0xba, "mov dx, imm16 at F000:FFF0");
  });

  test("vhost-vsock, binaries and clone strategies are reported", async () => {
    assert.equal(await hasVhostVsock(), existsSync("/dev/vhost-vsock"));
    const qemu = await probeQemu();
    assert.equal(qemu.found, true, "qemu-system-x86 is installed on this host");
    assert.match(qemu.version ?? "", /^\d+\.\d+/);
    const fc = await probeFirecracker();
    assert.ok(fc.detail.length > 0);
    const strategies = await cloneStrategies(home.home);
    assert.equal(strategies.length, 4);
  });
});
