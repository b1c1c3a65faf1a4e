import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, closeSync, copyFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { fetchDebianKernelDeb, importKernel, type KernelManifest } from "./index.ts";

// Downloaded once through apt and kept outside the repo, so tests never refetch it.
const DEB_CACHE = "/var/cache/banger-test";
const REPO_AGENT = join(process.env.BANGER_REPO ?? new URL("../..", import.meta.url).pathname, "agent/dist/banger-agent-amd64");
// The real agent when it is built; any static binary shows the initramfs layout just as well.
const AGENT = existsSync(REPO_AGENT) ? REPO_AGENT : "/bin/busybox";

function elfMachine(path: string): number {
  const fd = openSync(path, "r");
  const head = Buffer.alloc(20);
  readSync(fd, head, 0, 20, 0);
  closeSync(fd);
  assert.equal(head.readUInt32BE(0), 0x7f454c46, `${path} is an ELF`);
  return head.readUInt16LE(18);
}

/** Boots the kernel under TCG until `until` shows on the serial console (or 30 s pass). */
function bootUntil(args: string[], until: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const qemu = spawn("qemu-system-x86_64", ["-M", "microvm", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const timer = setTimeout(() => qemu.kill("SIGKILL"), 30_000);
    qemu.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (until.test(out)) qemu.kill("SIGKILL");
    });
    qemu.stderr.on("data", (b: Buffer) => (out += b.toString()));
    qemu.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe("importKernel from Debian's cloud kernel package", () => {
  let home: string;
  let deb: string;
  let manifest: KernelManifest;
  let dir: string;

  before(async () => {
    home = mkdtempSync(join(tmpdir(), "bgr-kernel-"));
    deb = await fetchDebianKernelDeb({ flavor: "cloud", arch: "amd64", cacheDir: DEB_CACHE });
    ({ manifest, dir } = await importKernel(deb, { name: "debian-cloud", kernelsDir: join(home, "kernels"), agentPath: AGENT }));
  });
  after(() => rmSync(home, { recursive: true, force: true }));

  it("caches the package download", async () => {
    assert.ok(deb.startsWith(`${DEB_CACHE}/linux-image-`), deb);
    assert.equal(await fetchDebianKernelDeb({ flavor: "cloud", arch: "amd64", cacheDir: DEB_CACHE }), deb);
  });

  it("extracts an x86-64 ELF vmlinux and records the package's kernel version", () => {
    assert.equal(elfMachine(join(dir, "vmlinux")), 0x3e);
    const pkgVersion = /^linux-image-(.+)_[^_]+_amd64\.deb$/.exec(basename(deb))?.[1];
    assert.equal(manifest.kernel_version, pkgVersion);
    assert.equal(manifest.name, "debian-cloud");
    assert.equal(manifest.source, `import:${deb}`);
    assert.equal(manifest.vmlinux_sha256, execFileSync("sha256sum", [join(dir, "vmlinux")], { encoding: "utf8" }).split(" ")[0]);
    assert.deepEqual(readdirSync(dir).sort(), ["initrd.img", "manifest.json", "modules", "vmlinux"]);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")), manifest);
  });

  it("keeps the guest's modules, each after its dependencies", () => {
    for (const m of ["virtio_blk", "virtio_net", "virtio_mmio", "virtio_pci", "virtio_console", "vsock", "vmw_vsock_virtio_transport", "virtio", "virtio_ring"]) {
      assert.ok(manifest.modules.includes(m), `${m} kept`);
    }
    assert.deepEqual(readdirSync(join(dir, "modules")).sort(), manifest.modules.map((m) => `${m}.ko`).sort());
    for (const [i, m] of manifest.modules.entries()) {
      // Checked with kmod's modinfo, independently of our own .modinfo reader.
      const deps = execFileSync("modinfo", ["-F", "depends", join(dir, "modules", `${m}.ko`)], { encoding: "utf8" }).trim();
      for (const dep of deps.split(",").filter(Boolean)) {
        const at = manifest.modules.indexOf(dep.replace(/-/g, "_"));
        assert.ok(at >= 0 && at < i, `${dep} loads before ${m}`);
      }
    }
    assert.ok(!manifest.modules.includes("ext4"), "ext4 is built into Debian's cloud kernel");
    assert.equal(manifest.modules_not_found, undefined);
  });

  it("generates an initramfs that cpio reads, with the agent as /init and the module list", () => {
    const listing = execFileSync("cpio", ["-t", "--quiet", "-F", join(dir, "initrd.img")], { encoding: "utf8" })
      .trim()
      .split("\n");
    for (const p of ["init", "dev/console", "proc", "sys", "newroot", "lib/banger/modules.list"]) assert.ok(listing.includes(p), `${p} in initramfs`);
    for (const m of manifest.modules) assert.ok(listing.includes(`lib/banger/modules/${m}.ko`), `${m}.ko in initramfs`);
    const out = mkdtempSync(join(home, "cpio-"));
    execFileSync("sh", ["-c", 'cpio -i --quiet -d -F "$1" init lib/banger/modules.list', "sh", join(dir, "initrd.img")], { cwd: out });
    assert.deepEqual(readFileSync(join(out, "init")), readFileSync(AGENT));
    assert.equal(readFileSync(join(out, "lib/banger/modules.list"), "utf8"), manifest.modules.map((m) => `${m}.ko\n`).join(""));
  });

  it("boots under QEMU TCG: kernel banner, then the initramfs /init runs", async () => {
    const out = await bootUntil(
      // tsc_early_khz: under TCG on a loaded host the PIT-based TSC calibration can fail and
      // the boot then stalls; a fixed early TSC rate avoids that path.
      ["-kernel", join(dir, "vmlinux"), "-initrd", join(dir, "initrd.img"), "-append", "console=ttyS0 panic=-1 tsc_early_khz=2600000"],
      /Run \/init as init process|Kernel panic/,
    );
    assert.match(out, new RegExp(`Linux version ${manifest.kernel_version.replace(/\./g, "\\.")} `));
    assert.doesNotMatch(out, /Initramfs unpacking failed/);
    assert.match(out, /Run \/init as init process/);
  });

  it("imports a kernel directory and refuses an existing name unless replacing", async () => {
    const src = join(home, "src");
    mkdirSync(join(src, "modules", "kernel"), { recursive: true });
    copyFileSync(join(dir, "vmlinux"), join(src, "vmlinux"));
    for (const m of readdirSync(join(dir, "modules"))) copyFileSync(join(dir, "modules", m), join(src, "modules", "kernel", m));
    const kernelsDir = join(home, "kernels");
    const imported = await importKernel(src, { name: "from-dir", kernelsDir, agentPath: AGENT });
    assert.equal(imported.manifest.kernel_version, manifest.kernel_version);
    assert.equal(imported.manifest.vmlinux_sha256, manifest.vmlinux_sha256);
    assert.equal(imported.manifest.has_initrd, true);
    // No modules.builtin here, so ext4/crc32c are reported rather than silently assumed.
    assert.deepEqual(imported.manifest.modules_not_found, ["crc32c_generic", "ext4"]);
    await assert.rejects(importKernel(src, { name: "from-dir", kernelsDir, agentPath: AGENT }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.AlreadyExists);
    rmSync(join(src, "modules"), { recursive: true });
    const bare = await importKernel(src, { name: "from-dir-bare", kernelsDir, agentPath: AGENT });
    assert.deepEqual([bare.manifest.modules, bare.manifest.has_initrd], [[], false]);
    assert.deepEqual(readdirSync(join(kernelsDir, "from-dir-bare")).sort(), ["manifest.json", "vmlinux"]);
    assert.deepEqual(readdirSync(kernelsDir).sort(), ["debian-cloud", "from-dir", "from-dir-bare"]);
  });
});

describe("importKernel rejects bad input and leaves nothing", () => {
  let home: string;
  before(() => {
    home = mkdtempSync(join(tmpdir(), "bgr-kernel-bad-"));
  });
  after(() => rmSync(home, { recursive: true, force: true }));

  async function rejectsClean(source: string, pattern: RegExp): Promise<void> {
    const kernelsDir = join(home, "kernels");
    await assert.rejects(importKernel(source, { name: "bad", kernelsDir, agentPath: AGENT }), (e: unknown) => {
      assert.ok(e instanceof BangerError, String(e));
      assert.match(e.message, pattern);
      return true;
    });
    assert.deepEqual(existsSync(kernelsDir) ? readdirSync(kernelsDir) : [], []);
  }

  it("a file that is not an ar archive", async () => {
    writeFileSync(join(home, "junk.deb"), "this is not a package\n");
    await rejectsClean(join(home, "junk.deb"), /not an ar archive/);
  });

  it("a truncated .deb", async () => {
    const deb = await fetchDebianKernelDeb({ cacheDir: DEB_CACHE });
    const fd = openSync(deb, "r");
    const head = Buffer.alloc(200_000);
    readSync(fd, head, 0, head.length, 0);
    closeSync(fd);
    writeFileSync(join(home, "truncated.deb"), head);
    await rejectsClean(join(home, "truncated.deb"), /truncated/);
  });

  it("a .deb whose data is cut short inside the ar bounds", async () => {
    const deb = await fetchDebianKernelDeb({ cacheDir: DEB_CACHE });
    const bytes = readFileSync(deb);
    bytes.fill(0x55, bytes.length - 4_000_000); // corrupt the xz stream's tail in place
    writeFileSync(join(home, "corrupt.deb"), bytes);
    await rejectsClean(join(home, "corrupt.deb"), /not a usable kernel package|could not decode/);
  });

  it("a bad name, before any I/O", async () => {
    const kernelsDir = join(home, "never-created");
    await assert.rejects(importKernel("/nonexistent", { name: "../evil", kernelsDir }), /invalid kernel name/);
    assert.equal(existsSync(kernelsDir), false);
  });

  it("a directory without vmlinux", async () => {
    mkdirSync(join(home, "empty"));
    await rejectsClean(join(home, "empty"), /has no vmlinux/);
  });
});
