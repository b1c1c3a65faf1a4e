// The qemu driver: `qemu-system-x86_64 -M microvm` with virtio-mmio devices, QMP on a Unix
// socket for control, the serial console in a file, and the agent channel as a real vsock
// (vhost-vsock, when the host has it and socat can dial it) or a virtio-serial port named
// banger.agent bound to a Unix socket.
import { spawn } from "node:child_process";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { chooseAccel, hasVhostVsock, type Accel } from "../host/index.ts";
import { resolvePaths } from "../config/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { which } from "../util/exec.ts";
import { consoleLogFiles } from "./console.ts";
import { dialUnix } from "./dial.ts";
import { BaseHandle } from "./handle.ts";
import { CONSOLE_LOG, VMM_LOG, checkSocketPath, connectUnix, launchVmm, prepareRuntimeDir, readLiveState, retryUntil, type VmmState } from "./process.ts";
import { followQmpEvents } from "./qmp-events.ts";
import { QmpClient, qmpCommand } from "./qmp.ts";
import { MIGRATE_IN_SOCKET, MIGRATE_OUT_SOCKET, prestartQemuRestore, restoreQemu, saveQemuSnapshot } from "./qemu-snapshot.ts";
import { validateSpec } from "./spec.ts";
import {
  AGENT_PORT_NAME,
  AGENT_VSOCK_PORT,
  type AgentStreamOptions,
  type SaveSnapshotOptions,
  type StartOptions,
  type StopOutcome,
  type VmHandle,
  type VmRunState,
  type VmSpec,
  type VmmDriver,
  type VmmEvent,
} from "./types.ts";

export const QEMU_BINARY = "qemu-system-x86_64";

export type AgentChannel = "virtio-serial" | "vhost-vsock";

export interface QemuOptions {
  accel: Accel;
  agentChannel: AgentChannel;
  /**
   * TCG only: the TSC frequency handed to the guest kernel (tsc_early_khz=). Under TCG the
   * guest's TSC is the host's, but on a busy host the kernel's PIT calibration fails, it
   * marks the TSC unstable and hangs early in boot (seen here about half the time).
   */
  tscKhz?: number;
  /**
   * Guest RAM in a file (memory-backend-file): shared (MAP_SHARED, the file is the RAM, so a
   * snapshot copies it) or private (MAP_PRIVATE: a snapshot's RAM mapped copy-on-write by a
   * restored VM). Default: spec.memoryFile, shared; neither: anonymous RAM.
   */
  memory?: { path: string; shared: boolean };
  /** A restore: QEMU waits for the device state (`-incoming defer`, then QMP migrate-incoming). */
  incoming?: boolean;
}

export function qemuPaths(runtimeDir: string) {
  return {
    qmp: join(runtimeDir, "qmp.sock"),
    /** A second QMP monitor the daemon keeps open for events (the first takes one client at a time). */
    events: join(runtimeDir, "qmp-events.sock"),
    agent: join(runtimeDir, "agent.sock"),
    console: join(runtimeDir, CONSOLE_LOG),
    log: join(runtimeDir, VMM_LOG),
  };
}

/** Decides what buildQemuArgv leaves open: the accelerator and the agent channel. */
export async function resolveQemuOptions(spec: VmSpec, env: NodeJS.ProcessEnv = process.env): Promise<QemuOptions & { accelReason: string }> {
  const { accel, reason } = spec.accel ? { accel: spec.accel, reason: "set for this VM" } : await chooseAccel({ env, cacheDir: resolvePaths(env).hostCacheDir });
  // Node cannot open AF_VSOCK sockets itself, so a vsock agent channel needs socat to dial it.
  const vsock = spec.vsockCid !== undefined && (await hasVhostVsock()) && which("socat") !== undefined;
  const tscKhz = accel === "tcg" ? await hostTscKhz() : undefined;
  return { accel, accelReason: reason, agentChannel: vsock ? "vhost-vsock" : "virtio-serial", ...(tscKhz ? { tscKhz } : {}) };
}

/** The host CPU's clock from /proc/cpuinfo, which is the TSC rate on the VMs and servers where TCG is used. */
async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const mhz = Number(cpuinfo.match(/^cpu MHz\s*:\s*([0-9.]+)/m)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}

function kernelCmdline(spec: VmSpec, opts: QemuOptions): string {
  if (!opts.tscKhz || spec.cmdline.includes("tsc_early_khz=")) return spec.cmdline;
  return `${spec.cmdline} tsc_early_khz=${opts.tscKhz}`;
}

/** QEMU's option syntax: a comma inside a value is written twice (every path: BANGER_HOME may hold one). */
const optValue = (value: string) => value.replaceAll(",", ",,");

/** The guest RAM file QEMU maps, if any (QemuOptions.memory). */
export function qemuMemory(spec: VmSpec, opts: Pick<QemuOptions, "memory">): { path: string; shared: boolean } | undefined {
  return opts.memory ?? (spec.memoryFile ? { path: spec.memoryFile, shared: true } : undefined);
}

/**
 * The exact command line the driver runs (the bench reuses it for a bare-qemu baseline). A
 * restore must get the same machine, memory size, cpus and device set as the snapshotted VM
 * (QEMU loads device state by device); paths, tap and accelerator may differ.
 */
export function buildQemuArgv(spec: VmSpec, opts: QemuOptions): string[] {
  const p = qemuPaths(spec.runtimeDir);
  const disk = spec.rootDisk;
  const memory = qemuMemory(spec, opts);
  // auto-read-only=off on every drive: a restore's QEMU opens its disks inactive, and with
  // QEMU's default it reopens them BY PATH (read-write) once the state has loaded; a disk moved
  // meanwhile (a standby's, to its VM's directory) would then be missing.
  const argv = [
    QEMU_BINARY,
    "-name",
    `banger,debug-threads=on`,
    "-M",
    `microvm,x-option-roms=off,isa-serial=on,rtc=on${memory ? ",memory-backend=ram" : ""}`,
    "-accel",
    opts.accel === "tcg" && spec.tcgCacheMib ? `tcg,tb-size=${spec.tcgCacheMib}` : opts.accel,
    ...(opts.accel === "kvm" ? ["-cpu", "host"] : []),
    "-smp",
    String(spec.cpus),
    "-m",
    `${spec.memoryMib}M`,
    ...(memory ? ["-object", `memory-backend-file,id=ram,size=${spec.memoryMib}M,mem-path=${optValue(memory.path)},share=${memory.shared ? "on" : "off"}`] : []),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    // A guest reboot ends the VM: the host decides whether to start it again.
    "-no-reboot",
    // A restore's guest RAM, kernel included, is the snapshot's: QEMU need not read and parse a
    // kernel and initrd it would never load (tens of MiB), and -kernel adds no device or RAM
    // block (microvm hands it to its firmware through fw_cfg), so the machine still matches.
    ...(opts.incoming ? [] : ["-kernel", spec.kernelPath, ...(spec.initrdPath ? ["-initrd", spec.initrdPath] : []), "-append", kernelCmdline(spec, opts)]),
    // append=on (O_APPEND): the console watcher (console.ts) truncates it while QEMU keeps writing.
    "-chardev",
    `file,id=console,path=${optValue(p.console)},append=on`,
    "-serial",
    "chardev:console",
    "-qmp",
    `unix:${optValue(p.qmp)},server=on,wait=off`,
    "-qmp",
    `unix:${optValue(p.events)},server=on,wait=off`,
    "-drive",
    `id=root,file=${optValue(disk.path)},format=${disk.format},if=none,discard=unmap,auto-read-only=off${disk.readOnly ? ",readonly=on" : ""}`,
    "-device",
    "virtio-blk-device,drive=root",
  ];
  for (const [i, extra] of (spec.extraDisks ?? []).entries()) {
    argv.push("-drive", `id=extra${i},file=${optValue(extra.path)},format=${extra.format},if=none,discard=unmap,auto-read-only=off`);
    argv.push("-device", `virtio-blk-device,drive=extra${i},serial=${extra.serial}`);
  }
  if (spec.tap) {
    argv.push("-netdev", `tap,id=net0,ifname=${spec.tap},script=no,downscript=no`);
    argv.push("-device", `virtio-net-device,netdev=net0${spec.mac ? `,mac=${spec.mac}` : ""}`);
  }
  if (opts.agentChannel === "vhost-vsock") {
    argv.push("-device", `vhost-vsock-device,guest-cid=${spec.vsockCid}`);
  } else {
    argv.push("-device", "virtio-serial-device");
    argv.push("-chardev", `socket,id=agent,path=${optValue(p.agent)},server=on,wait=off`);
    argv.push("-device", `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`);
  }
  if (opts.incoming) argv.push("-incoming", "defer");
  return argv;
}

export const qemuDriver: VmmDriver = {
  name: "qemu",
  start: (spec, opts) => launchQemu(spec, opts),
  restore: (spec, snapshotDir, opts) => restoreQemu(spec, snapshotDir, opts, launchQemu),
  prestartRestore: (spec, snapshotDir, opts) => prestartQemuRestore(spec, snapshotDir, opts, launchQemu),
  async adopt(runtimeDir: string): Promise<VmHandle | undefined> {
    const state = await readLiveState(runtimeDir, "qemu");
    return state ? new QemuHandle(runtimeDir, state) : undefined;
  },
};

/**
 * Starts QEMU for `spec` and waits for QMP; `extra` makes it a restore (private RAM, incoming
 * state), whose `then` runs once QMP answers (a failure there kills QEMU and cleans up).
 */
export async function launchQemu(
  spec: VmSpec,
  opts: StartOptions = {},
  extra: Pick<QemuOptions, "memory" | "incoming"> = {},
  then?: (pid: number, qmp: QmpClient) => Promise<void>,
): Promise<VmHandle> {
  await validateSpec(spec, "qemu");
  const p = qemuPaths(spec.runtimeDir);
  checkSocketPath(p.qmp);
  checkSocketPath(p.agent);
  checkSocketPath(p.events);
  const resolved = { ...(await resolveQemuOptions(spec)), ...extra };
  const memory = qemuMemory(spec, resolved);
  opts.progress?.({ phase: "boot", message: `qemu (${resolved.accel}: ${resolved.accelReason})` });
  // The console log holds the current boot only (a restore keeps the snapshot's in vmstate).
  await prepareRuntimeDir(spec.runtimeDir, [p.qmp, p.agent, p.events, ...consoleLogFiles(spec.runtimeDir)]);
  if (memory?.shared) {
    await mkdir(dirname(memory.path), { recursive: true, mode: 0o700 });
    // QEMU would map a stale file's contents as the new guest's RAM.
    await rm(memory.path, { force: true });
  }
  let early: Socket | undefined;
  const state = await launchVmm({
    runtimeDir: spec.runtimeDir,
    argv: buildQemuArgv(spec, resolved),
    stdoutPath: p.log,
    stderrPath: p.log,
    state: {
      driver: "qemu",
      controlSocket: p.qmp,
      eventsSocket: p.events,
      ...(resolved.agentChannel === "vhost-vsock" ? { vsockCid: spec.vsockCid } : { agentSocket: p.agent }),
      // The migration sockets exist only during a snapshot or restore, but a daemon killed then leaves them.
      sockets: [p.qmp, p.agent, p.events, join(spec.runtimeDir, MIGRATE_OUT_SOCKET), join(spec.runtimeDir, MIGRATE_IN_SOCKET)],
      ...(memory ? (memory.shared ? { memoryFile: memory.path } : { privateMemory: memory.path }) : {}),
    },
    ready: async (pid) => {
      // A restore goes on with the connection that answered (one QMP connection, not one per command).
      const qmp = await retryUntil("QMP", () => QmpClient.connect(p.qmp, 2000), {
        pid,
        timeoutMs: opts.timeoutMs ?? 15_000,
        signal: opts.signal,
        logPath: p.log,
        // QEMU's socket appears 0.1-0.3 s after exec; a doubling backoff would wake up to ~150 ms
        // after it. A refused connect to a Unix socket costs microseconds, so poll it closely.
        maxDelayMs: 5,
      });
      // A restore: the agent's serial port is connected BEFORE the device state loads. The
      // snapshotted VM had its host connected, so the guest then sees no change (QEMU tells it
      // only when the connection state differs from the saved one); connected after `cont`,
      // the guest's agent would first read EOF and poll again ~200 ms later.
      if (extra.incoming && resolved.agentChannel === "virtio-serial") {
        early = await connectUnix(p.agent);
        early.on("error", () => undefined); // QEMU gone: whoever takes the stream sees it closed
      }
      try {
        await then?.(pid, qmp);
      } finally {
        qmp.close();
      }
    },
  }).catch((err) => {
    early?.destroy();
    throw err;
  });
  return new QemuHandle(spec.runtimeDir, state, early);
}

class QemuHandle extends BaseHandle {
  constructor(
    runtimeDir: string,
    state: VmmState,
    /** The agent stream a restore connected before the state loaded: the first agentStream(). */
    private early?: Socket,
  ) {
    super(runtimeDir, state);
  }

  get agentOverSerial(): boolean {
    return this.state.agentSocket !== undefined;
  }

  private qmp<T = unknown>(command: string, timeoutMs?: number): Promise<T> {
    return qmpCommand<T>(this.state.controlSocket, command, undefined, timeoutMs);
  }

  async status(): Promise<VmRunState> {
    if (!this.isRunning()) return "stopped";
    const res = await this.qmp<{ status?: string }>("query-status");
    if (res.status === "running") return "running";
    // postmigrate: paused after saveSnapshot, until resume().
    if (res.status === "paused" || res.status === "io-error" || res.status === "postmigrate") return "paused";
    return "other";
  }

  /** Follows the events monitor: SHUTDOWN's reason (for the end), pauses on I/O errors, resumes. */
  protected override followGuest(listener: (event: VmmEvent) => void, signal: AbortSignal): Promise<void> {
    const path = this.state.eventsSocket;
    if (!path) return Promise.resolve(); // a VMM started before the events monitor existed: its end is still watched
    return followQmpEvents(path, signal, {
      shutdown: (reason) => (this.shutdownReason = reason),
      event: listener,
    }).catch(() => undefined); // the monitor is gone with the VMM; the end is reported by the pid watch
  }

  async pause(): Promise<void> {
    await this.qmp("stop");
  }

  async resume(): Promise<void> {
    await this.qmp("cont");
  }

  saveSnapshot(dir: string, opts: SaveSnapshotOptions = {}): Promise<{ stateBytes: number; memoryBytes: number }> {
    return saveQemuSnapshot({ runtimeDir: this.runtimeDir, qmpSocket: this.state.controlSocket, state: this.state }, dir, opts);
  }

  protected async stopGracefully(timeoutMs: number): Promise<StopOutcome> {
    // ACPI power button: the guest (its agent or acpid) powers off, and -no-reboot ends QEMU.
    const asked = await this.qmp("system_powerdown").then(
      () => true,
      () => false,
    );
    if (asked && (await this.exitsWithin(timeoutMs))) return "powerdown";
    // The guest ignored it: QEMU quits cleanly (flushes the disk) without the guest's help.
    await this.qmp("quit").catch(() => undefined);
    if (await this.exitsWithin(3000)) return "quit";
    return "killed";
  }

  agentStream(opts: AgentStreamOptions = {}): Promise<Duplex> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const early = this.early;
    this.early = undefined;
    if (early && !early.destroyed) return Promise.resolve(early);
    if (this.state.agentSocket) {
      const path = this.state.agentSocket;
      return dialUnix(path, { pid: this.pid, timeoutMs, signal: opts.signal });
    }
    return Promise.resolve(dialVsockWithSocat(this.state.vsockCid ?? 0));
  }
}

/** A Duplex over `socat - VSOCK-CONNECT:<cid>:52` (Node has no AF_VSOCK). Untested here: no /dev/vhost-vsock. */
function dialVsockWithSocat(cid: number): Duplex {
  if (cid < 3) throw new BangerError(ErrorCode.Failed, "this VM has no vsock CID recorded");
  const child = spawn("socat", ["-", `VSOCK-CONNECT:${cid}:${AGENT_VSOCK_PORT}`], { stdio: ["pipe", "pipe", "ignore"] });
  const stream = Duplex.from({ writable: child.stdin, readable: child.stdout });
  stream.on("close", () => child.kill("SIGTERM"));
  return stream;
}
