// The firecracker driver: spawn `firecracker --api-sock <runtimeDir>/fc.sock` (or the jailer),
// then configure it through its REST API exactly as its swagger describes: logger, metrics,
// boot-source, the root drive, machine-config, network-interfaces, vsock, InstanceStart; or,
// to restore a snapshot, logger, metrics and /snapshot/load (firecracker-snapshot.ts).
// The guest's serial console is Firecracker's stdout, which goes to console.log. The agent
// stream is Firecracker's hybrid vsock (dial.ts): connect to the UDS, send `CONNECT 52\n`, read `OK n\n`.
import { chown, link, mkdir, rm, symlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import type { Duplex } from "node:stream";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { consoleLogFiles } from "./console.ts";
import { dialFirecrackerVsock } from "./dial.ts";
import { fcCall } from "./fcapi.ts";
import { type FcApi, createSnapshot, loadSnapshot, stageSnapshotFiles } from "./firecracker-snapshot.ts";
import { BaseHandle } from "./handle.ts";
import { CONSOLE_LOG, VMM_LOG, checkSocketPath, launchVmm, prepareRuntimeDir, readLiveState, retryUntil } from "./process.ts";
import { checkSnapshotFiles } from "./snapshot-files.ts";
import { validateSpec } from "./spec.ts";
import {
  AGENT_VSOCK_PORT,
  type AgentStreamOptions,
  type JailerSpec,
  type SaveSnapshotOptions,
  type StartOptions,
  type StopOutcome,
  type VmHandle,
  type VmRunState,
  type VmSpec,
  type VmmDriver,
} from "./types.ts";

export const DEFAULT_GUEST_CID = 3;
const ROOT_DRIVE_ID = "rootfs";
const NET_IFACE_ID = "eth0";
/** The root disk as the (unjailed) Firecracker opens it: a symlink in its runtime dir, its working directory. */
const ROOT_LINK = "root.disk";

export function firecrackerPaths(runtimeDir: string) {
  return {
    api: join(runtimeDir, "fc.sock"),
    rootLink: join(runtimeDir, ROOT_LINK),
    vsock: join(runtimeDir, "vsock.sock"),
    console: join(runtimeDir, CONSOLE_LOG),
    log: join(runtimeDir, VMM_LOG),
    fcLog: join(runtimeDir, "fc.log"),
    metrics: join(runtimeDir, "fc.metrics"),
  };
}

export interface FirecrackerDriverOptions {
  /** The firecracker binary (default: $BANGER_FIRECRACKER, else `firecracker` on PATH). */
  binary?: string;
}

export function createFirecrackerDriver(opts: FirecrackerDriverOptions = {}): VmmDriver {
  const binary = () => opts.binary ?? process.env.BANGER_FIRECRACKER ?? "firecracker";
  return {
    name: "firecracker",
    start: (spec, startOpts) => startFirecracker(binary(), spec, startOpts),
    restore: (spec, snapshotDir, startOpts) => restoreFirecracker(binary(), spec, snapshotDir, startOpts),
    async adopt(runtimeDir: string): Promise<VmHandle | undefined> {
      const state = await readLiveState(runtimeDir, "firecracker");
      return state ? new FirecrackerHandle(runtimeDir, state) : undefined;
    },
  };
}

export const firecrackerDriver: VmmDriver = createFirecrackerDriver();

/** Firecracker's --id (and the jailer's): alphanumeric and '-', at most 64 characters. */
function instanceId(runtimeDir: string): string {
  return (
    (
      basename(runtimeDir)
        .replace(/[^a-zA-Z0-9-]/g, "-")
        .slice(0, 64) || "banger-vm"
    ).replace(/^-+/, "") || "banger-vm"
  );
}

/** Paths as the Firecracker process sees them: host paths, or chroot-relative under the jailer. */
interface ApiView {
  kernel: string;
  initrd?: string;
  disk: string;
  vsock: string;
  fcLog: string;
  metrics: string;
}

/** How a new Firecracker process is brought to a running guest once its API answers. */
type Configure = (api: FcApi, view: ApiView) => Promise<void>;

function startFirecracker(binary: string, spec: VmSpec, opts: StartOptions = {}): Promise<VmHandle> {
  return launchFirecracker(binary, spec, opts, "firecracker", async (api, view) => {
    for (const [method, path, body] of configurationRequests(spec, view)) await api(method, path, body);
    await api("PUT", "/actions", { action_type: "InstanceStart" });
  });
}

/**
 * A new Firecracker continuing the snapshot in snapshotDir (firecracker-snapshot.ts): no boot
 * source, RAM mapped copy-on-write, the spec's disk, tap and vsock socket. cpus, memory and the
 * virtio MAC come from the snapshot (Firecracker cannot change them at load): spec.mac is what
 * the agent gives the guest afterwards (reidentify).
 */
async function restoreFirecracker(binary: string, spec: VmSpec, snapshotDir: string, opts: StartOptions = {}): Promise<VmHandle> {
  await checkSnapshotFiles(snapshotDir, spec.memoryMib);
  const files = await stageSnapshotFiles(snapshotDir, spec.jailer ? { root: jailerChrootDir(spec.jailer), spec: spec.jailer } : undefined);
  return launchFirecracker(binary, spec, opts, "firecracker (restoring a snapshot)", async (api, view) => {
    // Logger and metrics are the only calls Firecracker allows before /snapshot/load, and a snapshot does not keep them.
    for (const [method, path, body] of observabilityRequests(view)) await api(method, path, body);
    await loadSnapshot(api, {
      files,
      ...(spec.tap ? { net: { ifaceId: NET_IFACE_ID, tap: spec.tap } } : {}),
      vsock: view.vsock,
      drivePathIsOwn: (path) => (spec.jailer ? true : !isAbsolute(path)),
    });
  });
}

async function launchFirecracker(binary: string, spec: VmSpec, opts: StartOptions, what: string, configure: Configure): Promise<VmHandle> {
  await validateSpec(spec, "firecracker");
  const p = firecrackerPaths(spec.runtimeDir);
  const id = spec.jailer?.id ?? instanceId(spec.runtimeDir);
  const jail = spec.jailer ? jailerChrootDir(spec.jailer) : undefined;
  const apiSock = checkSocketPath(jail ? join(jail, "run", "firecracker.socket") : p.api);
  const vsockHost = checkSocketPath(jail ? join(jail, "vsock.sock") : p.vsock);
  // Firecracker opens its log and metrics files without truncating; the console log holds the current boot only.
  await prepareRuntimeDir(spec.runtimeDir, [apiSock, vsockHost, p.rootLink, p.fcLog, p.metrics, ...consoleLogFiles(spec.runtimeDir)]);
  const view = jail && spec.jailer ? await stageJail(jail, spec, spec.jailer) : await hostView(spec, p);
  const argv = spec.jailer ? buildJailerArgv(spec.jailer) : [binary, "--api-sock", apiSock, "--id", id];
  opts.progress?.({ phase: "boot", message: spec.jailer ? `${what} (jailed)` : what });
  // Firecracker's stdout is the guest's serial console; its own messages go to stderr and fc.log.
  const state = await launchVmm({
    runtimeDir: spec.runtimeDir,
    argv,
    stdoutPath: p.console,
    stderrPath: p.log,
    state: {
      driver: "firecracker",
      controlSocket: apiSock,
      agentSocket: vsockHost,
      // The root disk's link goes with the sockets: removed once the VMM has exited.
      sockets: [apiSock, vsockHost, ...(jail ? [] : [p.rootLink])],
      ...(spec.jailer ? { cmdlineMark: `--id=${spec.jailer.id}` } : {}),
    },
    ready: async (pid) => {
      await retryUntil("the Firecracker API socket", () => fcCall(apiSock, "GET", "/", undefined, 2000), {
        pid,
        timeoutMs: opts.timeoutMs ?? 15_000,
        signal: opts.signal,
        logPath: p.log,
      });
      await configure((method, path, body, timeoutMs) => fcCall(apiSock, method, path, body, timeoutMs), view);
    },
  }).catch(async (err: unknown) => {
    // launchVmm cleans up after a failed start, but not when the binary never started.
    await rm(p.rootLink, { force: true });
    throw err;
  });
  return new FirecrackerHandle(spec.runtimeDir, state);
}

/**
 * Paths as Firecracker sees them. The root disk is the runtime dir's ROOT_LINK, relative to
 * Firecracker's working directory (the runtime dir): a snapshot records that path, so a VM
 * restored in another runtime dir opens its own disk (firecracker-snapshot.ts).
 */
async function hostView(spec: VmSpec, p: ReturnType<typeof firecrackerPaths>): Promise<ApiView> {
  await symlink(resolve(spec.rootDisk.path), p.rootLink);
  return { kernel: spec.kernelPath, initrd: spec.initrdPath, disk: ROOT_LINK, vsock: p.vsock, fcLog: p.fcLog, metrics: p.metrics };
}

/** Firecracker's own log and metrics: the first calls of a boot or a restore. */
function observabilityRequests(view: ApiView): Array<[method: string, path: string, body: unknown]> {
  return [
    ["PUT", "/logger", { log_path: view.fcLog, level: "Warning", show_level: true, show_log_origin: false }],
    ["PUT", "/metrics", { metrics_path: view.metrics }],
  ];
}

/** The API calls that describe the VM, in order, before InstanceStart. */
export function configurationRequests(spec: VmSpec, view: ApiView): Array<[method: string, path: string, body: unknown]> {
  const calls: Array<[string, string, unknown]> = [
    ...observabilityRequests(view),
    ["PUT", "/boot-source", { kernel_image_path: view.kernel, boot_args: spec.cmdline, ...(view.initrd ? { initrd_path: view.initrd } : {}) }],
    ["PUT", `/drives/${ROOT_DRIVE_ID}`, { drive_id: ROOT_DRIVE_ID, path_on_host: view.disk, is_root_device: true, is_read_only: spec.rootDisk.readOnly ?? false }],
    ["PUT", "/machine-config", { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMib }],
  ];
  if (spec.tap) {
    calls.push(["PUT", `/network-interfaces/${NET_IFACE_ID}`, { iface_id: NET_IFACE_ID, host_dev_name: spec.tap, ...(spec.mac ? { guest_mac: spec.mac } : {}) }]);
  }
  calls.push(["PUT", "/vsock", { guest_cid: spec.vsockCid ?? DEFAULT_GUEST_CID, uds_path: view.vsock }]);
  return calls;
}

class FirecrackerHandle extends BaseHandle {
  readonly agentOverSerial = false;

  private api<T = unknown>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return fcCall<T>(this.state.controlSocket, method, path, body, timeoutMs);
  }

  async status(): Promise<VmRunState> {
    if (!this.isRunning()) return "stopped";
    const info = await this.api<{ state?: string }>("GET", "/");
    if (info?.state === "Running") return "running";
    if (info?.state === "Paused") return "paused";
    return "other";
  }

  async pause(): Promise<void> {
    await this.api("PATCH", "/vm", { state: "Paused" });
  }

  async resume(): Promise<void> {
    await this.api("PATCH", "/vm", { state: "Resumed" });
  }

  /**
   * Firecracker sends the guest a vsock transport reset when it saves the device: open agent
   * streams of this VM end (dial again; the guest's listening socket survives).
   */
  async saveSnapshot(dir: string, opts: SaveSnapshotOptions = {}): Promise<{ stateBytes: number; memoryBytes: number }> {
    // A jailed Firecracker's API socket is <chroot>/run/firecracker.socket (buildJailerArgv).
    const jailRoot = this.state.cmdlineMark ? dirname(dirname(this.state.controlSocket)) : undefined;
    const sizes = await createSnapshot((m, p, b, t) => this.api(m, p, b, t), dir, jailRoot, opts.signal);
    await opts.afterState?.();
    return sizes;
  }

  protected async stopGracefully(timeoutMs: number): Promise<StopOutcome> {
    // Ctrl+Alt+Del through the emulated i8042; the guest resets and Firecracker exits.
    // There is no API "quit", so a guest that ignores it gets killed.
    const asked = await this.api("PUT", "/actions", { action_type: "SendCtrlAltDel" }).then(
      () => true,
      () => false,
    );
    if (asked && (await this.exitsWithin(timeoutMs))) return "powerdown";
    return "killed";
  }

  agentStream(opts: AgentStreamOptions = {}): Promise<Duplex> {
    const uds = this.state.agentSocket;
    if (!uds) return Promise.reject(new BangerError(ErrorCode.Failed, "this VM has no vsock socket recorded"));
    return dialFirecrackerVsock(uds, AGENT_VSOCK_PORT, { pid: this.pid, timeoutMs: opts.timeoutMs, signal: opts.signal });
  }
}

// ---- jailer (NOTES.md §8) ----

const JAILER_ID = /^[a-zA-Z0-9-]{1,64}$/;

/** <chroot_base>/<exec file name>/<id>/root: what the jailed Firecracker sees as "/". */
export function jailerChrootDir(j: JailerSpec): string {
  return join(j.chrootBaseDir ?? "/srv/jailer", basename(j.execFile), j.id, "root");
}

/** The jailer command line; Firecracker's own arguments follow `--`. */
export function buildJailerArgv(j: JailerSpec): string[] {
  if (!JAILER_ID.test(j.id)) throw invalidArgument(`jailer id ${JSON.stringify(j.id)} must be 1-64 letters, digits or '-'`);
  if (!Number.isInteger(j.uid) || !Number.isInteger(j.gid) || j.uid < 0 || j.gid < 0) throw invalidArgument("jailer uid and gid must be non-negative integers");
  const argv = [j.jailerPath ?? "jailer", "--id", j.id, "--exec-file", j.execFile, "--uid", String(j.uid), "--gid", String(j.gid)];
  if (j.chrootBaseDir) argv.push("--chroot-base-dir", j.chrootBaseDir);
  if (j.cgroupVersion) argv.push("--cgroup-version", String(j.cgroupVersion));
  if (j.netns) argv.push("--netns", j.netns);
  argv.push("--", "--api-sock", "/run/firecracker.socket");
  return argv;
}

/** Hard-links kernel, initrd and disk into the chroot, owned by the jail's uid:gid. Untested here (no jailer). */
async function stageJail(chroot: string, spec: VmSpec, j: JailerSpec): Promise<ApiView> {
  await mkdir(join(chroot, "run"), { recursive: true });
  const place = async (src: string, name: string): Promise<string> => {
    const dest = join(chroot, name);
    await rm(dest, { force: true });
    await link(src, dest);
    await chown(dest, j.uid, j.gid);
    return `/${name}`;
  };
  return {
    kernel: await place(spec.kernelPath, "vmlinux"),
    initrd: spec.initrdPath ? await place(spec.initrdPath, "initrd") : undefined,
    disk: await place(spec.rootDisk.path, "rootfs"),
    vsock: "/vsock.sock",
    fcLog: "/fc.log",
    metrics: "/fc.metrics",
  };
}
