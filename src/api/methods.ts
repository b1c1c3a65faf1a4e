// Every RPC method: its name, the params a caller sends (camelCase JSON) and the result the
// daemon answers. The client's `call` and the daemon's method table are both typed against
// this map, so a caller sending the wrong params or a handler returning the wrong shape fails
// the typecheck. Streaming methods also exchange StreamEvent/StreamInput (streams.ts).
import type { AuthorizeResult, DaemonStatus, DaemonStopResult, DnsSetupPlan, NetworkStatus, OperationView, WebInfo, WebState } from "./daemon.ts";
import type { AvailableImage, AvailableKernel, ConfiguredDefaults, DefaultsPlan, ImageView, InstalledKernel, KernelView, PullResult, Removed } from "./images.ts";
import type { ForkResult, SnapshotRemoved, SnapshotTaken, SnapshotView } from "./snapshots.ts";
import type { PoolList, PoolSetParams, PoolView } from "./pools.ts";
import type { SandboxMethods } from "./sandboxes.ts";
import type { AttachResult, ExitStatus, Landing, ListeningPort, SessionView, VmStats, VmView, WorkspaceView } from "./vm.ts";
import type { FsMethods } from "./fs.ts";

/** No params: the call may send nothing or `{}`. */
type None = Record<string, never> | undefined;
type Named = { name: string };
type Force = { name: string; force?: boolean };

/** What a command is run with (vm.exec, session.start). */
export interface ExecRequest {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  tty?: { rows: number; cols: number };
  /** False when the caller has no stdin to send (the command gets EOF at once). */
  stdin?: boolean;
}

export interface VmCreateParams {
  name?: string;
  image?: string;
  kernel?: string;
  cpus?: number;
  memoryBytes?: number;
  diskBytes?: number;
  noStart?: boolean;
  /** Egress policy: full, none or public. */
  net?: string;
  netPeer?: boolean;
  /**
   * Restore a snapshot instead of booting: the VM continues the snapshot's processes as a new
   * machine (its own name, hostname, disk overlay, RNG seed and address). Its image, kernel,
   * VMM, size and network are the snapshot's: the other machine params are refused with it.
   */
  fromSnapshot?: string;
  /**
   * Give the VM an empty workspace disk slot (QEMU VMs): `vm.workspace.put` then writes the
   * workspace into it as an ext4 built on the host instead of through the agent.
   */
  workspaceSlot?: boolean;
}

export interface SessionStartParams {
  vm: string;
  /** Default: the command's base name and a number (`sh-1`). */
  name?: string;
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Terminal size (default 24x80); null runs the command on pipes. */
  tty?: { rows: number; cols: number } | null;
}

type SessionRef = { vm: string; name: string };

export interface Methods extends FsMethods, SandboxMethods {
  "daemon.status": { params: None; result: DaemonStatus };
  "daemon.stop": { params: { cleanupNetwork?: boolean } | undefined; result: DaemonStopResult };
  "ops.list": { params: { limit?: number } | undefined; result: OperationView[] };

  "defaults.plan": { params: None; result: DefaultsPlan };
  "defaults.ensure": { params: None; result: { kernel: string; image: string } };
  "defaults.get": { params: None; result: ConfiguredDefaults };
  "defaults.set": { params: { image?: string; kernel?: string }; result: ConfiguredDefaults };

  "kernel.list": { params: None; result: KernelView[] };
  "kernel.catalog": { params: None; result: AvailableKernel[] };
  "kernel.show": { params: Named; result: KernelView };
  "kernel.pull": { params: Force; result: InstalledKernel };
  "kernel.rm": { params: Force; result: Removed };
  /** With `upload`, the caller sends the .deb or directory tar as the call's input. */
  "kernel.import": {
    params: { upload?: "deb" | "dir"; label?: string; debian?: boolean /** cloud or generic (the daemon says so otherwise). */; flavor?: string; name?: string; force?: boolean };
    result: InstalledKernel;
  };

  "image.list": { params: None; result: ImageView[] };
  "image.catalog": { params: None; result: AvailableImage[] };
  "image.show": { params: Named; result: ImageView };
  "image.pull": { params: { ref: string; name?: string; kernelRef?: string; kernel?: string; platform?: string; sizeBytes?: number; force?: boolean }; result: PullResult };
  "image.rm": { params: Force; result: Removed };
  "image.build": { params: { preset: string; name?: string; kernelRef?: string; sizeBytes?: number; force?: boolean }; result: ImageView & { becameDefault?: true } };

  "vm.list": { params: None; result: VmView[] };
  "vm.show": { params: Named; result: VmView };
  /** `fromPool`: the VM was taken ready from its image's warm pool (not booted for this call). */
  "vm.create": { params: VmCreateParams; result: VmView & { fromPool?: true } };
  "vm.start": { params: Named; result: VmView };
  "vm.stop": { params: { name: string; timeoutMs?: number }; result: VmView & { outcome: string } };
  "vm.kill": { params: Named; result: VmView };
  /** Stops the guest's CPUs, memory kept (state `paused`); vm.resume continues it. */
  "vm.pause": { params: Named; result: VmView };
  "vm.resume": { params: Named; result: VmView };
  /** Memory, device state and disk of a running VM, which keeps running (paused briefly: pauseMs). */
  "vm.snapshot": { params: { name: string; snapshot: string }; result: SnapshotTaken };
  /** `count` children (default 1, or names.length) of a running VM's current state; the parent keeps running. */
  "vm.fork": { params: { name: string; count?: number; names?: string[] }; result: ForkResult };
  /** `kill` (with force): end a running VMM at once instead of asking the guest to power off first (nothing in the VM is kept anyway). */
  "vm.rm": { params: Force & { kill?: boolean }; result: { removed: string } };
  "vm.set": { params: { name: string; cpus?: number; memoryBytes?: number }; result: VmView };
  "vm.stats": { params: Named; result: VmStats };
  /** Streams the console log as `out` events. */
  "vm.logs": { params: { name: string; follow?: boolean; bytes?: number }; result: { bytes: number } };
  /** Input: a tar of the files; they land under `dest`. */
  "vm.files.put": { params: { name: string; dest: string; uid?: number; gid?: number }; result: { files: number; bytes: number } };
  /** Streams a tar of `path` as `out` events. */
  "vm.files.get": { params: { name: string; path: string }; result: { done: true } };
  /** Streams stdio both ways (StreamEvent / StreamInput). */
  "vm.exec": { params: ExecRequest & { name: string }; result: ExitStatus };
  "vm.landing": { params: Named; result: Landing };
  "vm.ports": { params: Named; result: ListeningPort[] };
  /** A TCP connection to a guest port, bridged as a byte stream. */
  "vm.tcp": { params: { name: string; port: number }; result: { closed: true } };
  /** The guest's SSH server (started when needed), bridged as a byte stream. */
  "vm.ssh": { params: Named; result: { closed: true } };
  "vm.workspace.record": {
    params: { name: string; hostRepo: string; guestPath: string; baseCommit?: string; copiedCommit?: string; uid?: number; gid?: number };
    result: WorkspaceView;
  };
  "vm.workspace.info": { params: Named; result: WorkspaceView };
  /**
   * The call's input (a workspace tar, as vm.files.put takes) at `dest`, owned by uid/gid:
   * into the VM's empty workspace slot when it has one (`via: "disk"`), else through the agent.
   * `bytes`: the file bytes the tar will hold (the plan's), letting the daemon stage it in memory.
   */
  "vm.workspace.put": { params: { name: string; dest: string; uid?: number; gid?: number; bytes?: number }; result: { files: number; bytes: number; via: "disk" | "agent" } };

  /** `all`: fork bases too. */
  "snapshot.list": { params: { all?: boolean } | undefined; result: SnapshotView[] };
  "snapshot.show": { params: Named; result: SnapshotView };
  /** Refused while a VM was restored from it, unless `force` (the disk copy then stays until those VMs go). */
  "snapshot.rm": { params: Force; result: SnapshotRemoved };

  "session.start": { params: SessionStartParams; result: { vm: string; name: string; pid: number } };
  "session.list": { params: { vm?: string } | undefined; result: SessionView[] };
  /** Scrollback then live output as `out` events; input bytes, resizes, signals and `{t:"detach"}` in. */
  "session.attach": { params: SessionRef; result: AttachResult };
  "session.logs": { params: SessionRef & { follow?: boolean }; result: { state?: string; exit?: ExitStatus } };
  /** Text as `data`, or bytes as `b64`: exactly one. */
  "session.send": { params: SessionRef & ({ data: string } | { b64: string }); result: { bytes: number } };
  /** `signal`: 9, "9", "KILL" or "SIGKILL"; default SIGTERM. */
  "session.kill": { params: SessionRef & { signal?: string | number }; result: { vm: string; name: string; state: string; exit?: ExitStatus } };
  "session.rm": { params: SessionRef & { force?: boolean }; result: { removed: string } };

  /** Creates, resizes or (size 0) empties an image's warm pool; refused beyond pool.max_memory. */
  "pool.set": { params: PoolSetParams; result: PoolView };
  "pool.list": { params: None; result: PoolList };

  "net.status": { params: None; result: NetworkStatus };
  "net.dns.setup": { params: None; result: DnsSetupPlan };
  "ssh.authorize": { params: { publicKey: string }; result: AuthorizeResult };

  "web.info": { params: None; result: WebInfo };
  "web.reload": { params: None; result: WebState };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]["params"];
export type ResultOf<M extends MethodName> = Methods[M]["result"];
