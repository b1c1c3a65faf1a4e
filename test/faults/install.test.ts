// Fault injection for everything that installs a kernel or an image: the daemon is SIGKILLed
// at each phase of `image build --force`, `kernel import --force`, a catalog and an OCI `image
// pull --force` (seen by the staging or temp file that phase makes), then started again. After each:
// `kernel ls`/`image ls` tell the same truth as before, the kernel and image that existed are
// the very same files, nothing is left under the root, and doctor reports no leftovers.
// Then a full filesystem under the root: the --force build and import fail with ENOSPC named
// as such (exit 1), and the old ones stay.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { daemonPid, doctorLeftovers, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon, testKernelDeb, type CliResult } from "../helpers.ts";
import { startRegistry, type RunningRegistry } from "../registry/harness.ts";
import { pushTestImage } from "../registry/images.ts";

const KERNEL = "debian-6.1-cloud";
const IMAGE = "busybox";

interface Snapshot {
  kernels: unknown;
  images: unknown;
  files: Record<string, string>;
}

/** What must not change: the listings and the identity of the files (same inode, size, mtime). */
async function snapshot(home: string, env: NodeJS.ProcessEnv): Promise<Snapshot> {
  const kernels = JSON.parse((await mustRun(runBanger(["kernel", "ls", "--json"], { home, env }))).stdout);
  const images = JSON.parse((await mustRun(runBanger(["image", "ls", "--json"], { home, env }))).stdout);
  const files: Record<string, string> = {};
  for (const f of [join("kernels", KERNEL, "vmlinux"), join("kernels", KERNEL, "initrd.img"), join("images", IMAGE, "rootfs.ext4")]) {
    const st = statSync(join(home, f));
    files[f] = `${st.ino}:${st.size}:${st.mtimeMs}`;
  }
  return { kernels, images, files };
}

/** Everything under the root that is neither state nor a store entry: must be nothing. */
function strays(home: string): string[] {
  const out: string[] = [];
  const expect: Record<string, string[]> = { kernels: [KERNEL], images: [IMAGE], tmp: [], vms: [] };
  for (const [dir, names] of Object.entries(expect)) {
    for (const name of readdirSync(join(home, dir))) if (!names.includes(name)) out.push(join(dir, name));
  }
  for (const dir of ["cache", join("cache", "bundles"), join("cache", "initrd"), join("cache", "blobs", "tmp")]) {
    for (const name of existsSync(join(home, dir)) ? readdirSync(join(home, dir)) : []) {
      if (/\.(partial|tmp)-|^\./.test(name) || dir.endsWith(join("blobs", "tmp"))) out.push(join(dir, name));
    }
  }
  return out;
}

/** Runs the CLI and SIGKILLs the daemon as soon as `phase` (a path test) shows; the CLI's result and whether it did. */
async function killAt(home: string, env: NodeJS.ProcessEnv, args: string[], phase: () => boolean): Promise<{ res: CliResult; killed: boolean }> {
  let killed = false;
  let done = false;
  const running = runBanger(args, { home, env }).finally(() => (done = true));
  while (!done && !killed) {
    if (phase()) {
      process.kill(daemonPid(home), "SIGKILL");
      killed = true;
    } else await new Promise((r) => setTimeout(r, 5));
  }
  return { res: await running, killed };
}

const under = (dir: string, re: RegExp) => () => existsSync(dir) && readdirSync(dir).some((n) => re.test(n));
const inside = (dir: string, outer: RegExp, re: RegExp) => () =>
  existsSync(dir) && readdirSync(dir).some((n) => outer.test(n) && existsSync(join(dir, n)) && readdirSync(join(dir, n)).some((m) => re.test(m)));

describe("SIGKILL of the daemon while it installs a kernel or an image", () => {
  const bed = makeTempHome();
  const home = bed.home;
  let env: NodeJS.ProcessEnv;
  let deb: string;
  let before0: Snapshot;
  let registry: RunningRegistry;

  before(async () => {
    deb = await testKernelDeb();
    registry = await startRegistry();
    await pushTestImage({ url: registry.url }, "bgr/test", "1", "amd64", "oci");
    ({ env } = await prepareBootableHome(home));
    before0 = await snapshot(home, env);
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "fv"], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    await registry?.stop();
    bed.cleanup();
  });
  const ociPull = () => ["image", "pull", `${registry.host}/bgr/test:1`, "--name", IMAGE, "--kernel-ref", KERNEL, "--force"];

  const phases: { what: string; args: () => string[]; at: () => () => boolean }[] = [
    { what: "image build --force: work dir made", args: () => ["image", "build", "--preset", "busybox", "--kernel-ref", KERNEL, "--force"], at: () => under(join(home, "tmp"), /^image-busybox-/) },
    {
      what: "image build --force: mkfs.ext4 running",
      args: () => ["image", "build", "--preset", "busybox", "--kernel-ref", KERNEL, "--force"],
      at: () => inside(join(home, "tmp"), /^image-/, /^\.rootfs\.ext4\.tmp-/),
    },
    { what: "kernel import --force: upload arriving", args: () => ["kernel", "import", "--debian", "--deb", deb, "--force"], at: () => under(join(home, "tmp"), /^kernel-upload-/) },
    { what: "kernel import --force: kernel staged", args: () => ["kernel", "import", "--debian", "--deb", deb, "--force"], at: () => under(join(home, "kernels"), /^\.staging-/) },
    { what: "catalog image pull --force: bundle staged", args: () => ["image", "pull", "busybox", "--force"], at: () => under(join(home, "images"), /^\.staging-/) },
    { what: "OCI image pull --force: layers flattening", args: ociPull, at: () => inside(join(home, "tmp"), /^image-busybox-/, /^tree$/) },
    { what: "OCI image pull --force: mkfs.ext4 running", args: ociPull, at: () => inside(join(home, "tmp"), /^image-busybox-/, /^\.rootfs\.ext4\.tmp-/) },
  ];

  for (const p of phases) {
    it(`${p.what}: after a restart the old one is intact, listed, and nothing is left`, async () => {
      const { res, killed } = await killAt(home, env, p.args(), p.at());
      assert.ok(killed, `the phase was never seen (the command ended: ${res.code} ${res.stderr.trim()})`);
      assert.notEqual(res.code, 0, "the CLI reports the lost daemon");
      assert.deepEqual(await snapshot(home, env), before0); // restarts the daemon
      assert.deepEqual(strays(home), []);
      assert.equal((await doctorLeftovers(home, env)).status, "pass");
    });
  }

  it("the daemon log says what the start-up sweep removed and how much", () => {
    const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8");
    assert.match(log, /"msg":"removed leftovers of interrupted operations","count":\d+,"bytes":\d+/);
  });

  it("the kept kernel and image boot a VM; --force refuses to replace an image a VM uses", async () => {
    await mustRun(runBanger(["vm", "create", "--name", "fv", "--image", IMAGE, "--memory", "256M"], { home, env }));
    const uname = await mustRun(runBanger(["vm", "exec", "fv", "--", "uname", "-r"], { home, env }));
    assert.match(uname.stdout, /^6\.1\./);
    const refused = await runBanger(["image", "build", "--preset", "busybox", "--kernel-ref", KERNEL, "--force"], { home, env });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot replace image busybox: it is used by vm fv \(their disks are overlays of its rootfs\.ext4\)/);
    await mustRun(runBanger(["vm", "rm", "-f", "fv"], { home, env }));
    assert.deepEqual(await snapshot(home, env), before0);
  });

  it("a --force that completes replaces the image, and the image still checks clean", async () => {
    await mustRun(runBanger(["image", "build", "--preset", "busybox", "--kernel-ref", KERNEL, "--force"], { home, env }));
    const now = await snapshot(home, env);
    assert.notEqual(now.files[join("images", IMAGE, "rootfs.ext4")], before0.files[join("images", IMAGE, "rootfs.ext4")]);
    assert.deepEqual(strays(home), []);
    execFileSync("e2fsck", ["-fn", join(home, "images", IMAGE, "rootfs.ext4")], { stdio: "pipe" });
  });
});

describe("a full filesystem under the root during a --force build and import", () => {
  const bed = makeTempHome();
  const mnt = join(bed.home, "m");
  let env: NodeJS.ProcessEnv;
  let deb: string;
  let mounted = false;

  before(async () => {
    deb = await testKernelDeb();
    mkdirSync(mnt);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", mnt]);
    mounted = true;
    ({ env } = await prepareBootableHome(mnt));
  });
  after(async () => {
    await stopDaemon(mnt);
    if (mounted) execFileSync("umount", ["-l", mnt]);
    bed.cleanup();
  });

  /** Leaves about `free` bytes on the filesystem. */
  function fillTo(free: number): void {
    const st = execFileSync("stat", ["-f", "-c", "%a %S", mnt], { encoding: "utf8" }).trim().split(" ").map(Number);
    const avail = st[0]! * st[1]!;
    execFileSync("fallocate", ["-l", String(Math.max(0, avail - free)), join(mnt, "filler")]);
  }

  it("fails with ENOSPC named as such (exit 1), keeps the old image and kernel, leaves nothing", async () => {
    const before1 = await snapshot(mnt, env);
    fillTo(256 * 1024);
    for (const args of [
      ["image", "build", "--preset", "busybox", "--kernel-ref", KERNEL, "--force"],
      ["kernel", "import", "--debian", "--deb", deb, "--force"],
    ]) {
      const res = await runBanger(args, { home: mnt, env });
      assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
      assert.match(res.stderr, new RegExp(`no space left on ${mnt}\\S*: [\\d.]+ [KMG]?i?B free \\(ENOSPC\\)`), args.join(" "));
      assert.doesNotMatch(res.stderr, /not a usable|not a valid|does not fit/);
    }
    rmSync(join(mnt, "filler"));
    assert.deepEqual(await snapshot(mnt, env), before1);
    assert.deepEqual(
      strays(mnt).filter((s) => s !== "catalog" && s !== "filler"),
      [],
    );
    assert.equal((await doctorLeftovers(mnt, env)).status, "pass");
  });
});
