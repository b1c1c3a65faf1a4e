// Shared test helpers: temporary state roots and repository paths.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { startTestServer, type TestServer } from "./kits/bundle.ts";
import { TEST_CACHE } from "./kits/vm.ts";
import { resolvePaths } from "../src/config/index.ts";

export const REPO = new URL("..", import.meta.url).pathname;

/** A fresh BANGER_HOME under /tmp; call the returned cleanup in `after`. Short, so socket paths fit. */
export function makeTempHome(): { home: string; cleanup: () => void } {
  const home = mkdtempSync(join(tmpdir(), "bgr-"));
  // The home's RAM files dir on the tmpfs (config memoryDir) goes too: QEMU VMs' files are
  // removed with each VM, but the directory stays.
  const cleanup = () => {
    rmSync(home, { recursive: true, force: true });
    rmSync(resolvePaths({ BANGER_HOME: home }).memoryDir, { recursive: true, force: true });
  };
  return { home, cleanup };
}

/**
 * For a test file that pulls bundles: a temporary home (made at once) and a local HTTP server
 * (started before the file's tests; read it from inside a test), both removed after them.
 */
export function servedHome(): { readonly server: TestServer; readonly home: string } {
  const home = makeTempHome();
  let server: TestServer | undefined;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.close();
    home.cleanup();
  });
  return {
    get server() {
      if (!server) throw new Error("servedHome(): the server starts in a before hook; use it inside a test");
      return server;
    },
    home: home.home,
  };
}

/** The sha256 of `bytes`, in hex as catalogs write it. */
export function sha256Hex(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs bin/banger (the built CLI, as a user would) with BANGER_HOME set. */
export function runBanger(args: string[], opts: Parameters<typeof runBin>[2]): Promise<CliResult> {
  return runBin("banger", args, opts);
}

/** `asUser`: run as that user with their groups (setpriv; the test runs as root). */
export function runBin(
  bin: "banger" | "bangerd",
  args: string[],
  opts: { home: string; env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number; cwd?: string; asUser?: string },
): Promise<CliResult> {
  const argv = [join(REPO, "bin", bin), ...args];
  if (opts.asUser) argv.unshift("setpriv", "--reuid", opts.asUser, "--regid", opts.asUser, "--init-groups");
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      // Networking off unless a test asks for it (only inside a namespace it made: network.test.ts).
      // A dashboard on an ephemeral port unless a test names one: the default port is fixed.
      env: { ...process.env, BANGER_NETWORK: "off", BANGER_WEB_PORT: "0", ...opts.env, BANGER_HOME: opts.home },
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 180_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b) => (stdout += b));
    child.stderr.on("data", (b) => (stderr += b));
    child.stdin.on("error", () => undefined); // the program may exit before reading its input
    child.stdin.end(opts.input ?? "");
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

export interface Closed {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What the CLI wrote on the stream that stayed open. */
  other: string;
}

/**
 * Runs bin/banger with `closed` a pipe whose read end is closed before the CLI writes
 * anything, so its first write there fails with EPIPE every time (no race with `| true`).
 */
export function runWithClosed(closed: "stdout" | "stderr", args: string[], home: string, env: NodeJS.ProcessEnv): Promise<Closed> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO, "bin", "banger"), args, { env: { ...process.env, ...env, BANGER_HOME: home }, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    child[closed].destroy();
    let other = "";
    child[closed === "stdout" ? "stderr" : "stdout"].on("data", (b) => (other += b));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, other }));
  });
}

/** Calls in flight in the daemon, not counting the status call asking. */
async function otherActiveCalls(home: string, env: NodeJS.ProcessEnv): Promise<number> {
  const status = JSON.parse((await mustRun(runBanger(["daemon", "status", "--json"], { home, env }))).stdout) as { activeCalls: number };
  return status.activeCalls - 1;
}

/** Polls until the daemon has no call in flight but the asking one (a cancel takes a moment to land). */
export async function assertNoCallLeft(home: string, env: NodeJS.ProcessEnv): Promise<void> {
  let n = -1;
  for (let i = 0; i < 40 && n !== 0; i++) {
    n = await otherActiveCalls(home, env);
    if (n !== 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(n, 0, "a call was left running in the daemon");
}

/** Stops the daemon of a test root (if any) so no process outlives the test. */
/** The pid of the daemon serving `home` (from its pid file). */
export function daemonPid(home: string): number {
  return Number.parseInt(readFileSync(join(home, "run", "bangerd.pid"), "utf8"), 10);
}

/** `doctor`'s leftovers check: "pass" when nothing of an interrupted operation is left under the root. */
export async function doctorLeftovers(home: string, env: NodeJS.ProcessEnv): Promise<{ status: string; detail: string }> {
  const res = await runBanger(["doctor", "--json"], { home, env });
  const check = (JSON.parse(res.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks.find((c) => c.name === "leftovers");
  assert.ok(check, "doctor has a leftovers check");
  return check;
}

export async function stopDaemon(home: string): Promise<void> {
  const pidFile = join(home, "run", "bangerd.pid");
  let pid: number | undefined;
  try {
    pid = Number.parseInt(readFileSync(pidFile, "utf8"), 10);
  } catch {
    return;
  }
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  process.kill(pid, "SIGKILL");
}

/** Zombie-aware (a sandbox's PID 1 may not reap orphans): the same check the VMM driver uses. */
export { isAlive } from "../src/vmm/process.ts";

/** Shared by every test that needs Debian's cloud kernel package (fetched once through apt). */
export { TEST_CACHE };

export async function testKernelDeb(): Promise<string> {
  const { fetchDebianKernelDeb } = await import("../src/kernel/index.ts");
  return fetchDebianKernelDeb({ flavor: "cloud", cacheDir: TEST_CACHE });
}

/** Runs a command; rejects with its stderr when it fails. For test set-up steps. */
export async function mustRun(r: Promise<CliResult>): Promise<CliResult> {
  const res = await r;
  if (res.code !== 0) throw new Error(`command failed (${res.code}): ${res.stderr.trim()}`);
  return res;
}

/**
 * A state root with Debian's cloud kernel imported (as debian-6.1-cloud, the default kernel)
 * and the busybox image published through a local catalog: make-bundle → catalog → pull.
 */
export async function prepareBootableHome(home: string, env: NodeJS.ProcessEnv = {}): Promise<{ env: NodeJS.ProcessEnv; kernel: string; image: string }> {
  const { writeFile, mkdir } = await import("node:fs/promises");
  const { busyboxRootfsTar } = await import("../src/presets/index.ts");
  const { pipeline } = await import("node:stream/promises");
  const { createWriteStream, readFileSync, statSync } = await import("node:fs");
  const deb = await testKernelDeb();
  const catalogDir = join(home, "catalog");
  await mkdir(catalogDir, { recursive: true });
  const tarPath = join(catalogDir, "busybox-rootfs.tar");
  await pipeline(await busyboxRootfsTar(), createWriteStream(tarPath));
  await mustRun(runBanger(["internal", "make-bundle", "--rootfs-tar", tarPath, "--name", "busybox", "--kernel-ref", "debian-6.1-cloud", "--distro", "busybox", "--out", catalogDir], { home }));
  const bundle = join(catalogDir, "busybox.tar.zst");
  const sha = sha256Hex(readFileSync(bundle));
  const catalog = {
    version: 1,
    entries: [
      {
        name: "busybox",
        distro: "busybox",
        arch: "x86_64",
        kernel_ref: "debian-6.1-cloud",
        tarball_url: "busybox.tar.zst",
        tarball_sha256: sha,
        size_bytes: statSync(bundle).size,
        description: "test image",
      },
    ],
  };
  await writeFile(join(catalogDir, "catalog.json"), JSON.stringify(catalog));
  // BANGER_NETWORK=off also for commands a test spawns itself with this env (under `script`).
  const fullEnv = { BANGER_NETWORK: "off", ...env, BANGER_IMAGE_CATALOG: join(catalogDir, "catalog.json") };
  // These VMs boot under QEMU (tests look at its QMP socket and events): pinned in the config
  // file, not the environment, so a test can still set vmm itself. Unset, a host with
  // Firecracker and KVM would give new VMs Firecracker.
  await mustRun(runBanger(["config", "set", "vmm", "qemu"], { home, env: fullEnv }));
  await mustRun(runBanger(["kernel", "import", "--debian", "--deb", deb, "--json"], { home, env: fullEnv }));
  await mustRun(runBanger(["image", "pull", "busybox", "--json"], { home, env: fullEnv }));
  return { env: fullEnv, kernel: "debian-6.1-cloud", image: "busybox" };
}
