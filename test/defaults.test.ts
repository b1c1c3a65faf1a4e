// The manual setup path, without booting: `kernel import`, then `image build` finding that
// kernel, then a VM made without naming either. The first kernel and image become the
// configured defaults (said once on stderr); with exactly one of a kind and none configured,
// that one is used; `kernel rm` / `image rm` refuse while images or the config use them.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome, mustRun, runBanger, stopDaemon, testKernelDeb } from "./helpers.ts";

const KERNEL = "debian-6.1-cloud";

describe("defaults on the manual path (kernel import, image build, vm create)", () => {
  const { home, cleanup } = makeTempHome();
  const banger = (...args: string[]) => runBanger(args, { home });
  const firstVm = async () =>
    (JSON.parse((await banger("doctor", "--json")).stdout) as { checks: { name: string; status: string; detail: string; fix?: string }[] }).checks.find((c) => c.name === "first-vm");
  const configGet = async (key: string) => (await mustRun(banger("config", "get", key, "--json"))).stdout;
  let deb = "";
  before(async () => {
    deb = await testKernelDeb();
  });
  after(async () => {
    for (const v of JSON.parse((await banger("vm", "ls", "--json")).stdout || "[]") as { name: string }[]) await banger("vm", "rm", "-f", v.name);
    await stopDaemon(home);
    cleanup();
  });

  it("says what is missing when there is no image at all", async () => {
    const r = await banger("vm", "create", "--no-start");
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^banger: no image given: no default image is configured and there are no images yet \(.*banger image build --preset busybox/);
    assert.deepEqual(await firstVm(), {
      name: "first-vm",
      status: "warn",
      neededToBoot: false,
      detail: "no kernel and no image yet: a first VM needs a kernel and an image",
      fix: "banger kernel import --debian && banger image build --preset busybox (or just `banger vm run`, which offers to build what is missing)",
    });
    const text = await banger("doctor");
    assert.match(text.stdout, /^warn {2}first-vm +no kernel and no image yet/m);
    assert.match(text.stdout, /for a first VM: banger kernel import --debian && banger image build --preset busybox/);
  });

  it("makes the first imported kernel the default, and says so once", async () => {
    const r = await banger("kernel", "import", "--debian", "--deb", deb);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^kernel ${KERNEL} is now the default \\(banger config set default_kernel NAME to change it\\)$`, "m"));
    assert.equal(JSON.parse(await configGet("default_kernel")).value, KERNEL);
    assert.equal((await firstVm())?.detail, "no image yet: a first VM needs a kernel and an image");
    assert.match((await firstVm())?.fix ?? "", /^banger image build --preset busybox \(/);
  });

  it("builds an image with the only kernel, and makes it the default image", async () => {
    const r = await banger("image", "build", "--preset", "busybox", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).kernelRef, KERNEL);
    assert.match(r.stderr, /^image busybox is now the default \(banger config set default_image NAME to change it\)$/m);
    assert.equal(JSON.parse(await configGet("default_image")).value, "busybox");
    assert.deepEqual(await firstVm(), { name: "first-vm", status: "pass", neededToBoot: false, detail: `image busybox, kernel ${KERNEL} (1 kernel, 1 image)` });
  });

  it("creates a VM naming neither image nor kernel", async () => {
    const r = await banger("vm", "create", "--no-start", "--name", "manual", "--json");
    assert.equal(r.code, 0, r.stderr);
    const vm = JSON.parse(r.stdout) as { image: string; kernel: string };
    assert.deepEqual([vm.image, vm.kernel], ["busybox", KERNEL]);
    await mustRun(banger("vm", "rm", "-f", "manual"));
  });

  it("uses the only image when none is configured", async () => {
    await mustRun(banger("config", "unset", "default_image"));
    const r = await banger("vm", "create", "--no-start", "--name", "only", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { image: string }).image, "busybox");
    await mustRun(banger("vm", "rm", "-f", "only"));
    assert.deepEqual(JSON.parse(await configGet("default_image")), { key: "default_image", value: "busybox", source: "default", only: true });
    assert.equal((await mustRun(banger("config", "get", "default_image"))).stdout, "busybox (default: the only image)\n");
    await mustRun(banger("config", "set", "default_image", "busybox"));
  });

  it("does not make a second kernel the default", async () => {
    const dir = join(home, "kdir");
    mkdirSync(dir);
    copyFileSync(join(home, "kernels", KERNEL, "vmlinux"), join(dir, "vmlinux"));
    const r = await banger("kernel", "import", dir, "--name", "second");
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /is now the default/);
    assert.equal(JSON.parse(await configGet("default_kernel")).value, KERNEL);
  });

  it("with two kernels and none configured, `image build` names both", async () => {
    await mustRun(banger("config", "unset", "default_kernel"));
    const r = await banger("image", "build", "--preset", "busybox", "--name", "other");
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^banger: no kernel for image other: no default kernel is configured and there are 2 \\(${KERNEL}, second\\) to choose from \\(pass --kernel-ref NAME`));
    await mustRun(banger("config", "set", "default_kernel", KERNEL));
  });

  it("`kernel rm` refuses while an image or the config uses it, and --force says what broke", async () => {
    const refused = await banger("kernel", "rm", KERNEL);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `banger: cannot remove kernel ${KERNEL}: used by image busybox, default_kernel (\`banger kernel rm --force ${KERNEL}\` removes it anyway)\n`);
    assert.equal((await mustRun(banger("kernel", "rm", "second"))).stdout, "kernel second removed\n", "an unused kernel goes without --force");
    const forced = await banger("kernel", "rm", "-f", KERNEL);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(forced.stdout, `kernel ${KERNEL} removed\n`);
    assert.match(forced.stderr, /^banger: image busybox named it: VMs from them need --kernel NAME/m);
    assert.match(forced.stderr, /^banger: default_kernel named it and is now unset/m);
    assert.deepEqual(JSON.parse(await configGet("default_kernel")), { key: "default_kernel", value: null, source: "default" });
  });

  it("`image rm` refuses while it is the default image; --force unsets it", async () => {
    const refused = await banger("image", "rm", "busybox");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^banger: cannot remove image busybox: used by default_image/);
    const forced = await banger("image", "rm", "--force", "busybox");
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /default_image named it and is now unset/);
    assert.deepEqual(JSON.parse((await mustRun(banger("image", "ls", "--json"))).stdout), []);
  });
});
