// Shared pieces of the VM and pull benchmarks: a temporary BANGER_HOME that is always torn
// down (VMs removed, daemon stopped, processes we started killed, files deleted, even on
// Ctrl-C), timing a CLI command as a user runs it, medians, and a bare `qemu-system-x86_64`
// boot with exactly the argv banger's qemu driver builds (the baseline for boot and exec).
// Not a test helper: nothing here asserts; the benches print numbers.
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { resolvePaths } from "../src/config/index.ts";
import { bootSpec } from "../src/daemon/boot.ts";
import type { DaemonContext } from "../src/daemon/index.ts";
import { connectAgent, type AgentClient } from "../src/guest/index.ts";
import type { VmRecord } from "../src/store/index.ts";
import { buildQemuArgv, qemuPaths, resolveQemuOptions, type VmSpec } from "../src/vmm/index.ts";
import { type CliResult, isAlive, makeTempHome, prepareBootableHome, runBanger, stopDaemon } from "../test/helpers.ts";

export const MiB = 1024 * 1024;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const fmt = (ms: number) => `${ms.toFixed(0).padStart(6)} ms`;
export const since = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Runs `fn` and returns its wall time in ms. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return since(t);
}

/** Cleanups run in reverse order at the end, or on SIGINT/SIGTERM before exiting. */
const cleanups: Array<() => Promise<void> | void> = [];
let cleaning: Promise<void> | undefined;
let failed = false;
let interrupted = false;

export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      try {
        await cleanups.pop()!();
      } catch (err) {
        console.error(`cleanup: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    interrupted = true;
    console.error(`${sig}: cleaning up`);
    void runCleanups().finally(() => process.exit(130));
  });
}

/** Runs a bench's main with cleanup guaranteed and a non-zero exit on failure. */
export async function runBench(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (interrupted) return; // the signal handler cleans up and exits
    console.error(`bench failed: ${(err as Error).stack ?? err}`);
    process.exitCode = 1;
    failed = true;
  } finally {
    await runCleanups();
  }
}

export interface BenchHome {
  home: string;
  env: NodeJS.ProcessEnv;
  /** bin/banger with this home; throws with stderr when it fails. */
  banger(args: string[], opts?: { timeoutMs?: number }): Promise<CliResult>;
  /** Wall time of one bin/banger process, spawn to exit (fails loudly). */
  time(args: string[], opts?: { timeoutMs?: number }): Promise<number>;
}

/**
 * A fresh BANGER_HOME, registered for teardown: every VM removed with `vm rm -f`, the
 * daemon stopped, the directory deleted. `bootable` imports Debian's cloud kernel and
 * publishes the busybox image (test/helpers.ts prepareBootableHome).
 */
export async function benchHome(opts: { bootable?: boolean } = {}): Promise<BenchHome> {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  onCleanup(async () => {
    if (failed) printDaemonStderr(home);
    await removeAllVms(home, env);
    await stopDaemon(home);
    cleanup();
  });
  if (opts.bootable) ({ env } = await prepareBootableHome(home));
  const banger = async (args: string[], o: { timeoutMs?: number } = {}) => {
    const r = await runBanger(args, { home, env, timeoutMs: o.timeoutMs ?? 300_000 });
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  };
  return { home, env, banger, time: (args, o) => timed(() => banger(args, o)) };
}

function printDaemonStderr(home: string): void {
  try {
    const text = readFileSync(join(home, "logs", "bangerd.stderr"), "utf8").trim();
    if (text) console.error(`bangerd.stderr (last lines):\n${text.split("\n").slice(-15).join("\n")}`);
  } catch {
    /* no daemon ran */
  }
}

async function removeAllVms(home: string, env: NodeJS.ProcessEnv): Promise<void> {
  const ls = await runBanger(["vm", "ls", "--json"], { home, env }).catch(() => undefined);
  if (ls?.code !== 0) return;
  for (const vm of JSON.parse(ls.stdout) as VmRecord[]) {
    const r = await runBanger(["vm", "rm", "-f", vm.name], { home, env });
    if (r.code !== 0) console.error(`cleanup: vm rm -f ${vm.name}: ${r.stderr.trim()}`);
  }
}

export async function showVm(h: BenchHome, name: string): Promise<VmRecord> {
  return JSON.parse((await h.banger(["vm", "show", name, "--json"])).stdout) as VmRecord;
}

export interface BareVm {
  pid: number;
  agentSocket: string;
  /** spawn → the agent's first byte on its socket, ms (after our HELLO, as the agent speaks second). */
  firstByteMs: number;
  /** spawn → the handshake answered (what `vm create` waits for), ms. */
  handshakeMs: number;
  /** spawn → the console log's last write (the agent's "listening"/"ready" lines), ms. */
  consoleMs: number;
  agent: AgentClient;
  /** The argv it was started with. */
  argv: string[];
  /** Kills the qemu we started (by pid), waits for it to go. */
  kill(): Promise<void>;
}

/**
 * Boots the busybox image with a bare qemu: a fresh qcow2 overlay (made before the clock
 * starts), the spec banger's daemon builds (daemon/boot.ts bootSpec) and the argv its qemu
 * driver builds (buildQemuArgv + resolveQemuOptions). The clock runs from spawning qemu
 * to the agent's answer; the socket is polled every 2 ms so the baseline is not penalized
 * by a retry back-off.
 */
export async function bootBareQemu(h: BenchHome, o: { id: string; image: string; kernel: string; cpus: number; memoryBytes: number }): Promise<BareVm> {
  // Same state root as banger's daemon: the accelerator probe's cached verdict is shared.
  process.env.BANGER_HOME = h.home;
  const paths = resolvePaths({ BANGER_HOME: h.home });
  const runtimeDir = join(paths.runDir, "bare", o.id);
  const diskDir = join(h.home, "bare-disks");
  mkdirSync(runtimeDir, { recursive: true });
  mkdirSync(diskDir, { recursive: true });
  const disk = join(diskDir, `${o.id}.qcow2`);
  await runChecked(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", join(paths.imagesDir, o.image, "rootfs.ext4"), disk]);
  const ctx = { paths } as unknown as DaemonContext; // bootSpec reads only ctx.paths.kernelsDir
  const record = { name: o.id, kernel: o.kernel, cpus: o.cpus, memoryBytes: o.memoryBytes } as VmRecord;
  const spec: VmSpec = await bootSpec(ctx, record, { path: disk, format: "qcow2" }, runtimeDir);
  const argv = buildQemuArgv(spec, await resolveQemuOptions(spec));
  const p = qemuPaths(runtimeDir);
  const logFd = openSync(join(runtimeDir, "qemu.log"), "w");
  const wallStart = performance.timeOrigin + performance.now();
  const start = process.hrtime.bigint();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pid = child.pid!;
  const kill = async () => {
    if (isAlive(pid)) child.kill("SIGKILL");
    await exited;
  };
  onCleanup(kill);
  const sock = await pollConnect(p.agent, pid, 120_000);
  let firstByteMs = 0;
  sock.once("data", () => (firstByteMs = since(start)));
  const agent = await connectAgent(sock, { serial: true, timeoutMs: 120_000, client: "bench" });
  const handshakeMs = since(start);
  const consoleMs = statSync(p.console).mtimeMs - wallStart;
  return { pid, agentSocket: p.agent, firstByteMs, handshakeMs, consoleMs, agent, argv, kill };
}

/** Connects to a Unix socket, retrying every 2 ms while the process is alive. */
export async function pollConnect(path: string, pid: number, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect({ path });
        s.once("connect", () => {
          s.off("error", reject);
          resolve(s);
        });
        s.once("error", reject);
      });
    } catch (err) {
      if (!isAlive(pid)) throw new Error(`qemu (pid ${pid}) exited before ${path} answered`);
      if (Date.now() > deadline) throw new Error(`${path}: ${(err as Error).message}`);
      await sleep(2);
    }
  }
}

/** The argv of a running process. */
export function processArgv(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
}

/** Runs a command to completion; rejects with its stderr when it fails. */
export function runChecked(argv: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...opts.env } });
    let out = "";
    let err = "";
    child.stdout.on("data", (b) => (out += b));
    child.stderr.on("data", (b) => (err += b));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`))));
  });
}

/** Polls `pool ls` until the image's pool has at least `ready` VMs ready and none warming (fails on the pool's error). */
export async function waitPoolReady(h: BenchHome, image: string, ready: number, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = JSON.parse((await h.banger(["pool", "ls", "--json"])).stdout) as { pools: { image: string; ready: number; warming: number; lastError: string | null }[] };
    const p = list.pools.find((x) => x.image === image);
    if (p && p.ready >= ready && p.warming === 0) return;
    if (p?.lastError) throw new Error(`pool ${image} failed to warm: ${p.lastError}`);
    if (Date.now() > deadline) throw new Error(`pool ${image} was not ready within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A loopback port nothing listens on right now (a server binds it next). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
