// One VM as the SDK hands it out: its name and last known view, and what a program does
// with it (run commands, move files, stop, remove, snapshot, fork, export its workspace).
// Every method is one daemon call (or a few), through the client it came from.
import type { Client, ForkResult, Landing, SnapshotTaken, VmView } from "../api/index.ts";
import { type Command, type ExecOptions, type ExecResult, execIn, type SpawnOptions, spawnIn, type VmProcess } from "./exec.ts";
import { type FileHead, readGuestFile, readGuestFileHead, type WriteFileOptions, writeGuestFile } from "./files.ts";
import { exportWorkspace, type WorkspaceExport } from "./workspace.ts";

export class Vm {
  private landing: Promise<Landing> | undefined;

  constructor(
    private readonly client: Client,
    /** What the daemon last said about this VM (refresh() asks again). */
    public view: VmView,
  ) {}

  get name(): string {
    return this.view.name;
  }

  /** Asks the daemon for the VM's current state. */
  async refresh(): Promise<VmView> {
    this.view = await this.client.call("vm.show", { name: this.name });
    return this.view;
  }

  /**
   * Runs a command to its end: an argv, or a string run with `sh -c`. A non-zero exit is a
   * result, not an error; a command that cannot run (not found, not executable) rejects.
   */
  exec(command: Command, opts?: ExecOptions): Promise<ExecResult> {
    return execIn(this.client, this.name, command, opts);
  }

  /** Starts a command and streams: stdout/stderr as Readables, stdin when `stdin: "pipe"`. */
  spawn(command: Command, opts?: SpawnOptions): VmProcess {
    return spawnIn(this.client, this.name, command, opts);
  }

  /**
   * Writes a file (absolute path; its directory is created), replacing one there. Owned by the
   * user commands run as (the image's, `dev`, or root: vm.landing) unless uid/gid say.
   */
  async writeFile(path: string, data: string | Uint8Array, opts: WriteFileOptions = {}): Promise<{ bytes: number }> {
    let { uid, gid } = opts;
    if (uid === undefined && gid === undefined) {
      this.landing ??= this.client.call("vm.landing", { name: this.name });
      this.landing.catch(() => (this.landing = undefined));
      ({ uid, gid } = await this.landing);
    }
    return writeGuestFile(this.client, this.name, path, data, { ...opts, uid, gid });
  }

  /** A whole file's bytes; rejects past `maxBytes` (default 64 MiB). */
  readFile(path: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
    return readGuestFile(this.client, this.name, path, opts.maxBytes);
  }

  /** A file as text (UTF-8). */
  async readTextFile(path: string, opts: { maxBytes?: number } = {}): Promise<string> {
    return (await this.readFile(path, opts)).toString("utf8");
  }

  /** At most `maxBytes` of a file, and its whole size (the rest is not transferred). */
  readFileHead(path: string, maxBytes: number): Promise<FileHead> {
    return readGuestFileHead(this.client, this.name, path, maxBytes);
  }

  async start(): Promise<VmView> {
    this.view = await this.client.call("vm.start", { name: this.name });
    return this.view;
  }

  /** Asks the guest to power off (forced after `timeoutMs`). */
  async stop(opts: { timeoutMs?: number } = {}): Promise<VmView> {
    const { outcome: _outcome, ...view } = await this.client.call("vm.stop", { name: this.name, timeoutMs: opts.timeoutMs });
    this.view = view;
    return view;
  }

  /** Ends the VMM at once (the VM stays, stopped). */
  async kill(): Promise<VmView> {
    this.view = await this.client.call("vm.kill", { name: this.name });
    return this.view;
  }

  /** Removes the VM; `force` removes a running one (killed at once), else it must be stopped. */
  async rm(opts: { force?: boolean } = {}): Promise<void> {
    await this.client.call("vm.rm", { name: this.name, force: opts.force, kill: opts.force });
  }

  /** Memory, devices and disk of the running VM as snapshot `snapshot` (the VM keeps running). */
  snapshot(snapshot: string): Promise<SnapshotTaken> {
    return this.client.call("vm.snapshot", { name: this.name, snapshot });
  }

  /** Copies of the running VM's current state as new VMs (`count`, or one per name). */
  async fork(opts: { count?: number; names?: string[] } = {}): Promise<Vm[] & { result: ForkResult }> {
    const result = await this.client.call("vm.fork", { name: this.name, ...opts });
    return Object.assign(
      result.children.map((child) => new Vm(this.client, child)),
      { result },
    );
  }

  /** The guest's changes to a `vm run` workspace as a git patch (mbox) against the host's HEAD. */
  exportWorkspace(opts: { signal?: AbortSignal } = {}): Promise<WorkspaceExport> {
    return exportWorkspace(this.client, this.name, opts.signal);
  }
}
