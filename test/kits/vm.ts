// Test support (not used by banger itself): a real guest kernel and tiny initramfs images.
// The kernel is Debian's cloud kernel, fetched once with `apt-get download` into
// /var/cache/banger-test and unpacked beside the .deb. Initramfs images are newc cpio
// archives with busybox-static as /init's shell and any kernel modules a test needs
// (with their dependencies, loaded in order by the generated /init).
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { after, before } from "node:test";
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fetchDebianKernelDeb } from "../../src/kernel/index.ts";
import { errorLine } from "../../src/util/errors.ts";
import { run, runChecked, which } from "../../src/util/exec.ts";
import { forcedAccel } from "../../src/host/index.ts";
import type { VmSpec } from "../../src/vmm/index.ts";
import { processesMentioning } from "../../src/vmm/process.ts";
export { processesMentioning };

export const TEST_CACHE = "/var/cache/banger-test";

export interface TestKernel {
  version: string;
  /** bzImage (qemu boots it directly). */
  vmlinuz: string;
  /** lib/modules/<version> */
  modulesDir: string;
}

/** The cached Debian cloud kernel, downloading it if needed; a string says why it is unavailable. */
export async function ensureTestKernel(): Promise<TestKernel | string> {
  await mkdir(TEST_CACHE, { recursive: true });
  let deb = await findDeb();
  if (!deb) {
    try {
      deb = basename(await fetchDebianKernelDeb({ flavor: "cloud", cacheDir: TEST_CACHE }));
    } catch (err) {
      return `cannot fetch Debian's cloud kernel package: ${errorLine(err)}`;
    }
  }
  const version = deb.match(/^linux-image-([^_]+)_/)?.[1] ?? "";
  const root = join(TEST_CACHE, `${deb}.d`);
  if (!existsSync(root)) {
    const staging = await mkdtemp(join(TEST_CACHE, ".extract-"));
    try {
      await runChecked(["dpkg-deb", "-x", join(TEST_CACHE, deb), staging]);
      await rename(staging, root);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      if (!existsSync(root)) throw err; // else a concurrent test won the race
    }
  }
  return { version, vmlinuz: join(root, "boot", `vmlinuz-${version}`), modulesDir: join(root, "lib", "modules", version) };
}

async function findDeb(): Promise<string | undefined> {
  const names = await readdir(TEST_CACHE).catch(() => [] as string[]);
  return names
    .filter((n) => /^linux-image-[0-9.]+-[0-9]+-cloud-amd64_.*_amd64\.deb$/.test(n))
    .sort()
    .pop();
}

export interface InitramfsOptions {
  /** Module names (e.g. "virtio_console"); dependencies are added and loaded first. */
  modules?: string[];
  /** Shell run by /init after /dev, /proc, /sys are mounted and the modules loaded. */
  script: string;
}

/** Writes a newc cpio initramfs to `dest`. */
export async function buildTestInitramfs(kernel: TestKernel, dest: string, opts: InitramfsOptions): Promise<void> {
  const busybox = which("busybox");
  if (!busybox) throw new Error("busybox not found (apt-get install -y busybox-static)");
  const tree = await mkdtemp(`${dest}.tree-`);
  try {
    for (const d of ["bin", "dev", "proc", "sys", "lib/modules", "tmp"]) await mkdir(join(tree, d), { recursive: true });
    await copyFile(busybox, join(tree, "bin", "busybox"));
    const ordered = await withDependencies(kernel, opts.modules ?? []);
    for (const m of ordered) await copyFile(m.path, join(tree, "lib", "modules", `${m.name}.ko`));
    const init = [
      "#!/bin/busybox sh",
      "/bin/busybox --install -s /bin",
      "export PATH=/bin",
      "mount -t devtmpfs dev /dev; mount -t proc proc /proc; mount -t sysfs sys /sys",
      ...ordered.map((m) => `insmod /lib/modules/${m.name}.ko`),
      opts.script,
    ].join("\n");
    await writeFile(join(tree, "init"), `${init}\n`);
    await chmod(join(tree, "init"), 0o755);
    const files = await run(["find", "."], { cwd: tree });
    await runChecked(["cpio", "-o", "-H", "newc", "--quiet", "-F", dest], { cwd: tree, input: files.stdout });
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}

interface ModuleFile {
  name: string;
  path: string;
}

/** Orders modules so each comes after the ones it depends on (modinfo -F depends). */
async function withDependencies(kernel: TestKernel, names: string[]): Promise<ModuleFile[]> {
  const index = await moduleIndex(kernel.modulesDir);
  const out: ModuleFile[] = [];
  const visit = async (name: string): Promise<void> => {
    if (out.some((m) => m.name === name)) return;
    const path = index.get(name);
    if (!path) throw new Error(`module ${name} not in ${kernel.modulesDir}`);
    const deps = (await runChecked(["modinfo", "-F", "depends", path])).stdout.trim();
    for (const dep of deps.split(",").filter(Boolean)) await visit(dep);
    out.push({ name, path });
  };
  for (const n of names) await visit(n.replace(/-/g, "_"));
  return out;
}

async function moduleIndex(dir: string): Promise<Map<string, string>> {
  const res = await runChecked(["find", dir, "-name", "*.ko"]);
  const map = new Map<string, string>();
  for (const path of res.stdout.split("\n").filter(Boolean)) {
    const name = path.slice(path.lastIndexOf("/") + 1, -3).replace(/-/g, "_");
    map.set(name, path);
  }
  return map;
}

/** Safety net for `after` hooks: SIGKILLs whatever a failed test left running under `text`. */
export async function killProcessesMentioning(text: string): Promise<void> {
  for (const pid of await processesMentioning(text)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** A small VM spec booting the test kernel and initramfs under QEMU (TCG unless BANGER_ACCEL says). */
export function qemuTestSpec(kernel: TestKernel, files: { initrd: string; disk: string }, runtimeDir: string, extraCmdline = ""): VmSpec {
  return {
    kernelPath: kernel.vmlinuz,
    initrdPath: files.initrd,
    cmdline: `console=ttyS0 quiet panic=-1 ${extraCmdline}`.trim(),
    rootDisk: { path: files.disk, format: "raw" },
    cpus: 1,
    memoryMib: 256,
    runtimeDir,
    accel: forcedAccel() ?? "tcg",
  };
}

/** What a file of QEMU boot tests shares; filled in by its before hook. */
export interface QemuTestBed {
  /** A temporary directory (short, for socket paths), removed after the file's tests. */
  home: string;
  /** The test kernel, or why there is none (tests skip with it). */
  kernel: TestKernel | string;
  initrd: string;
  /** An empty raw disk. */
  disk: string;
  /** A spec booting the bed's kernel and initramfs, its runtime dir `name` under home. */
  spec(name: string, extraCmdline?: string): VmSpec;
}

/**
 * For a test file that boots QEMU: before its tests, a temporary directory, the test kernel,
 * an initramfs from `initramfs` and a raw disk of `diskBytes`; after them, every process
 * naming the directory killed and the directory removed.
 */
export function qemuTestBed(initramfs: InitramfsOptions, diskBytes: number): QemuTestBed {
  const bed: QemuTestBed = {
    home: "",
    kernel: "not set up",
    initrd: "",
    disk: "",
    spec(name, extraCmdline = "") {
      if (typeof bed.kernel === "string") throw new Error(bed.kernel);
      return qemuTestSpec(bed.kernel, bed, join(bed.home, name), extraCmdline);
    },
  };
  before(async () => {
    bed.home = await mkdtemp(join(tmpdir(), "bgr-"));
    bed.kernel = await ensureTestKernel();
    if (typeof bed.kernel === "string") return;
    bed.initrd = join(bed.home, "initrd.cpio");
    await buildTestInitramfs(bed.kernel, bed.initrd, initramfs);
    bed.disk = join(bed.home, "disk.raw");
    await writeFile(bed.disk, "");
    await truncate(bed.disk, diskBytes);
  });
  after(async () => {
    if (!bed.home) return;
    await killProcessesMentioning(bed.home);
    await rm(bed.home, { recursive: true, force: true });
  });
  return bed;
}

/** The virtio modules the agent loads from its initramfs (dependencies first). */
export const AGENT_GUEST_MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback"];

/**
 * A guest whose PID 1 is the real agent: an initramfs (the agent as /init plus the virtio
 * modules it loads from modules.list) and an ext4 root disk (busybox, the agent) it
 * switch_roots to (`banger.root=/dev/vda` on the command line). Written into `dir`.
 */
export async function buildAgentGuest(kernel: TestKernel, dir: string, agent: string): Promise<{ initrd: string; root: string; cmdline: string }> {
  const busybox = which("busybox");
  if (!busybox) throw new Error("busybox not found (apt-get install -y busybox-static)");
  const tree = await mkdtemp(join(dir, "initrd-"));
  const root = await mkdtemp(join(dir, "root-"));
  try {
    await mkdir(join(tree, "lib/banger/modules"), { recursive: true });
    await copyFile(agent, join(tree, "init"));
    const index = await moduleIndex(kernel.modulesDir);
    for (const m of AGENT_GUEST_MODULES) await copyFile(index.get(m) ?? "", join(tree, "lib/banger/modules", `${m}.ko`));
    await writeFile(join(tree, "lib/banger/modules.list"), `${AGENT_GUEST_MODULES.join("\n")}\n`);
    const files = await run(["find", "."], { cwd: tree });
    await runChecked(["cpio", "-o", "-H", "newc", "--quiet", "-F", join(dir, "agent-initrd.cpio")], { cwd: tree, input: files.stdout });
    for (const d of ["bin", "sbin", "etc", "root", "proc", "sys", "dev", "run", "tmp"]) await mkdir(join(root, d), { recursive: true });
    await copyFile(busybox, join(root, "bin/busybox"));
    for (const a of ["sh", "cat", "echo", "sleep", "sync", "setsid", "ps"]) await symlink("busybox", join(root, "bin", a));
    await copyFile(agent, join(root, "sbin/banger-agent"));
    await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await writeFile(join(root, "etc/group"), "root:x:0:\n");
    await runChecked(["mkfs.ext4", "-q", "-d", root, join(dir, "agent-root.ext4"), "64M"]);
  } finally {
    await rm(tree, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  }
  return { initrd: join(dir, "agent-initrd.cpio"), root: join(dir, "agent-root.ext4"), cmdline: "console=ttyS0 rdinit=/init panic=-1 quiet banger.root=/dev/vda" };
}
