// What the daemon holds in memory for running VMs: the VMM handle and the one agent
// connection per VM (a virtio-serial port takes a single host connection, so every
// operation on a VM shares it). Every handle set here is watched (vmm's watch: its end,
// QEMU's pauses) until it is forgotten; what it reports goes to `onVmmEvent`. Everything
// here can be rebuilt from the store and the runtime directories, which is what
// reconciliation at start does.
import { readdirSync } from "node:fs";
import { setPriority } from "node:os";
import { vmDir, vmRuntimeDir, type Paths } from "../config/index.ts";
import { connectAgent, type AgentClient } from "../guest/index.ts";
import type { VmHandle, VmmEvent } from "../vmm/index.ts";

export interface VmPaths {
  /** <root>/vms/<name>: the VM's root disk and anything kept across boots. */
  dir: string;
  /** <run>/vms/<id>: the VMM's sockets, pid and logs while it runs (short, for socket paths). */
  runtimeDir: string;
}

export function vmPaths(paths: Paths, name: string, id: string): VmPaths {
  return { dir: vmDir(paths, name), runtimeDir: vmRuntimeDir(paths, id) };
}

/**
 * Sets the scheduling priority of every thread of a VMM (Linux's nice is per thread: QEMU's
 * vCPU threads are not the main one). Warm pools boot at a low priority so a refill never
 * slows the VMs users wait on, and a VM taken from a pool gets the normal one back. Best
 * effort: only root may raise a priority again, so it is only changed as root.
 */
export function setVmmPriority(pid: number, nice: number): void {
  if (process.getuid?.() !== 0) return;
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // gone
  }
  for (const tid of threads) {
    try {
      setPriority(Number(tid), nice);
    } catch {
      /* the thread ended meanwhile */
    }
  }
}

export class VmRuntime {
  private readonly handles = new Map<string, VmHandle>();
  private readonly agents = new Map<string, Promise<AgentClient>>();
  private readonly unwatch = new Map<string, () => void>();
  /**
   * VMs the daemon itself paused for a moment (a snapshot): the VMM's pause and resume events
   * for them are the daemon's own, not news (vm-health.ts pauseBriefly).
   */
  readonly briefPauses = new Set<string>();
  /** Set by the daemon once its operations exist (vm-health.ts); until then events are dropped. */
  onVmmEvent: (vm: string, handle: VmHandle, event: VmmEvent) => void = () => undefined;

  /** `onAgentFailure` hears why a VM's agent connection ended badly (a misbehaving guest): one line per connection. */
  constructor(private readonly onAgentFailure: (vm: string, err: Error) => void = () => undefined) {}

  setHandle(name: string, handle: VmHandle): void {
    this.unwatch.get(name)?.();
    this.handles.set(name, handle);
    this.unwatch.set(
      name,
      handle.watch((event) => this.onVmmEvent(name, handle, event)),
    );
  }

  /** A VM taken from a warm pool changes its name: its handle, watch and agent connection follow. */
  rename(from: string, to: string): void {
    const handle = this.handles.get(from);
    const agent = this.agents.get(from);
    this.unwatch.get(from)?.();
    this.unwatch.delete(from);
    this.handles.delete(from);
    this.agents.delete(from);
    if (handle) this.setHandle(to, handle);
    if (agent) this.agents.set(to, agent);
  }

  handle(name: string): VmHandle | undefined {
    return this.handles.get(name);
  }

  /** Forgets a VM's handle and closes its agent connection (after stop, kill, rm). */
  forget(name: string): void {
    this.unwatch.get(name)?.();
    this.unwatch.delete(name);
    this.handles.delete(name);
    const agent = this.agents.get(name);
    this.agents.delete(name);
    void agent?.then(
      (a) => a.close(),
      () => undefined,
    );
  }

  /** The VM's agent connection, made on first use and shared until it drops. */
  agent(name: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<AgentClient> {
    const existing = this.agents.get(name);
    if (existing) return existing;
    const handle = this.handles.get(name);
    if (!handle) return Promise.reject(new Error(`no running VMM for ${name}`));
    const connecting = (async () => {
      const stream = await handle.agentStream({ timeoutMs: opts.timeoutMs, signal: opts.signal });
      const client = await connectAgent(stream, {
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
        client: "bangerd",
        serial: handle.agentOverSerial,
      });
      // The next operation reconnects; a guest that broke the protocol affects only its own VM.
      void client.done.then((err) => {
        const now = this.dropAgent(connecting);
        if (err) this.onAgentFailure(now ?? name, err);
      });
      return client;
    })();
    this.agents.set(name, connecting);
    connecting.catch(() => this.dropAgent(connecting));
    return connecting;
  }

  /** Forgets a connection that ended, under whatever name its VM has now (rename); returns that name. */
  private dropAgent(connection: Promise<AgentClient>): string | undefined {
    for (const [name, c] of this.agents) {
      if (c !== connection) continue;
      this.agents.delete(name);
      return name;
    }
    return undefined;
  }

  runningNames(): string[] {
    return [...this.handles.keys()];
  }
}
