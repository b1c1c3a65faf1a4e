// A first `banger vm run` on a fresh host: no kernel, no image, no config. banger says what
// it will build (the default kernel from Debian's package through apt, the busybox image),
// builds it with progress (a non-TTY run proceeds without asking), and runs the command.
// And the manual path banger suggests when told not to build: `kernel import`, then
// `image build`, then `vm run` naming neither, which finds both as the defaults.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { makeTempHome, mustRun, runBanger, stopDaemon, testKernelDeb } from "../helpers.ts";

describe("defaults on an empty state root", () => {
  const { home, cleanup } = makeTempHome();
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("builds the default kernel and image, then runs the command", async () => {
    const r = await runBanger(["vm", "run", "--no-workspace", "--", "echo", "ok"], { home, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "ok\n");
    assert.match(r.stderr, /banger has no default kernel or image yet and will build:/);
    assert.match(r.stderr, /kernel debian-<version>-cloud: Debian's cloud kernel package/);
    assert.match(r.stderr, /image busybox: preset busybox/);
    assert.match(r.stderr, /defaults ready: kernel debian-\d+\.\d+-cloud, image busybox/);
    const kernel = JSON.parse((await runBanger(["config", "get", "default_kernel", "--json"], { home })).stdout).value;
    assert.match(kernel, /^debian-\d+\.\d+-cloud$/);
    assert.equal(JSON.parse((await runBanger(["config", "get", "default_image", "--json"], { home })).stdout).value, "busybox");
    // The second run finds everything in place and builds nothing.
    const again = await runBanger(["vm", "run", "--yes", "--no-workspace", "--", "echo", "again"], { home });
    assert.equal(again.stdout, "again\n");
    assert.doesNotMatch(again.stderr, /will build/);
    assert.deepEqual(JSON.parse((await runBanger(["vm", "ls", "--json"], { home })).stdout), []);
  });
});

describe("defaults made by hand (the path `vm run` suggests when told not to build)", () => {
  const { home, cleanup } = makeTempHome();
  after(async () => {
    for (const v of JSON.parse((await runBanger(["vm", "ls", "--json"], { home })).stdout || "[]") as { name: string }[]) await runBanger(["vm", "rm", "-f", v.name], { home });
    await stopDaemon(home);
    cleanup();
  });

  it("kernel import, image build, then vm run with neither named", async () => {
    const kernel = await mustRun(runBanger(["kernel", "import", "--debian", "--deb", await testKernelDeb()], { home }));
    assert.match(kernel.stderr, /^kernel debian-6\.1-cloud is now the default/m);
    const image = await mustRun(runBanger(["image", "build", "--preset", "busybox"], { home }));
    assert.match(image.stdout, /^image busybox built from preset busybox \(.*kernel debian-6\.1-cloud/m);
    assert.match(image.stderr, /^image busybox is now the default/m);
    const r = await runBanger(["vm", "run", "--no-workspace", "--", "echo", "ok"], { home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "ok\n");
    assert.doesNotMatch(r.stderr, /will build|no default/);
    assert.deepEqual(JSON.parse((await runBanger(["vm", "ls", "--json"], { home })).stdout), []);
  });
});
