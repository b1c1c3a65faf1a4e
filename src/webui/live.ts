// The live VM list: while anyone watches, polls vm.list (and vm.stats for running VMs)
// about once a second and pushes each changed snapshot to the watchers (SSE streams).
import { cpuBusyPercent, cpuJiffies, type DashboardVm, type DashboardVmStats, type GuestStats, memUsedBytes, type VmView } from "../api/index.ts";
import { type DaemonTable, invoke } from "./invoke.ts";

const POLL_MS = 1000;
/** A guest that does not answer its stats in time shows none this round. */
const STATS_TIMEOUT_MS = 2500;

type GuestStatsLike = Pick<GuestStats, "memory" | "cpu" | "uptimeSeconds">;

export type Watcher = (snapshot: string) => void;

export class LiveVms {
  private readonly watchers = new Set<Watcher>();
  private readonly lastCpu = new Map<string, { busy: number; total: number }>();
  private timer: NodeJS.Timeout | undefined;
  private last: string | undefined;
  private readonly stopped = new AbortController();

  constructor(
    private readonly methods: DaemonTable,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Adds a watcher; it gets the latest snapshot at once when there is one. Returns unwatch. */
  watch(watcher: Watcher): () => void {
    this.watchers.add(watcher);
    if (this.last !== undefined) watcher(this.last);
    if (!this.timer) this.schedule(0);
    return () => this.watchers.delete(watcher);
  }

  close(): void {
    this.stopped.abort();
    clearTimeout(this.timer);
    this.watchers.clear();
  }

  /** One snapshot of every VM with its stats (also what GET /api/vms?stats=1 answers). */
  async snapshot(signal: AbortSignal): Promise<DashboardVm[]> {
    const vms = await invoke(this.methods, "vm.list", {}, { signal });
    for (const name of this.lastCpu.keys()) if (!vms.some((vm) => vm.name === name && vm.state === "running")) this.lastCpu.delete(name);
    return Promise.all(vms.map(async (vm) => ({ ...pickVm(vm), stats: vm.state === "running" ? await this.stats(vm.name, signal) : null })));
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.watchers.size === 0 || this.stopped.signal.aborted) {
      this.timer = undefined;
      this.last = undefined;
      return;
    }
    try {
      const text = JSON.stringify(await this.snapshot(this.stopped.signal));
      if (text !== this.last) {
        this.last = text;
        for (const w of this.watchers) w(text);
      }
    } catch (err) {
      if (!this.stopped.signal.aborted) this.onError(err);
    }
    if (!this.stopped.signal.aborted) this.schedule(POLL_MS);
  }

  private async stats(name: string, signal: AbortSignal): Promise<DashboardVmStats | null> {
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(STATS_TIMEOUT_MS)]);
    const raw = await Promise.race([
      invoke(this.methods, "vm.stats", { name }, { signal: deadline }),
      new Promise<undefined>((resolve) => deadline.addEventListener("abort", () => resolve(undefined), { once: true })),
    ]).catch(() => undefined);
    if (!raw?.guest) return null;
    const { memory, cpu, uptimeSeconds } = raw.guest;
    return {
      cpuPercent: this.cpuPercent(name, cpu),
      memUsedBytes: memUsedBytes(memory),
      memTotalBytes: memory.total,
      uptimeSeconds,
      vmmRssBytes: raw.vmmRssBytes,
    };
  }

  /** Busy jiffies over all jiffies since the last sample (the counters are cumulative). */
  private cpuPercent(name: string, cpu: GuestStatsLike["cpu"]): number | null {
    const cur = cpuJiffies(cpu);
    const prev = this.lastCpu.get(name);
    this.lastCpu.set(name, cur);
    return prev ? cpuBusyPercent(prev, cur) : null;
  }
}

function pickVm(vm: VmView): Omit<DashboardVm, "stats"> {
  const { name, state, image, kernel, vmm, cpus, memoryBytes, ip, error, stateReason, createdAt, startedAt } = vm;
  return { name, state, image, kernel, vmm, cpus, memoryBytes, ip, error, stateReason, createdAt, startedAt };
}
