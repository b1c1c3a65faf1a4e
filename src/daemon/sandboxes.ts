// Sandboxes (the E2B-compatible API's): a VM named by the sandbox id, labelled (its config's
// `sandbox`), with a store row beside it (store/sandboxes.ts) that holds what the API keeps:
// template, metadata, envVars, access token, expiry. The operations compose the VM ones
// (create takes from a warm pool when one matches, as vm.create does); SandboxClock removes,
// or pauses (autoPause), each running sandbox when it expires, from the rows, so expiry
// survives a daemon restart (an expiry passed while no daemon ran is applied at start).
import { randomBytes, randomInt } from "node:crypto";
import type { SandboxView } from "../api/index.ts";
import type { SandboxRecord, VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, errorLine, notFound } from "../util/errors.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { forkVm } from "./fork.ts";
import { createFromSnapshot } from "./restore.ts";
import { snapshotVm } from "./snapshots.ts";
import { pauseVm, resumeVm } from "./vm-health.ts";
import { createVm, getVm, removeVm, startVm } from "./vms.ts";

/** The template the SDK asks for when it names none: the default image. */
export const BASE_TEMPLATE = "base";

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/**
 * A new sandbox id: "i" and 19 of [a-z0-9], the shape E2B's own ids have (the SDK accepts any
 * string; the shape keeps them valid VM, host and snapshot names too).
 */
export function newSandboxId(taken: (id: string) => boolean): string {
  for (;;) {
    let id = "i";
    for (let i = 0; i < 19; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
    if (!taken(id)) return id;
  }
}

const newAccessToken = () => randomBytes(24).toString("hex");

export function sandboxView(r: SandboxRecord, vm: VmRecord): SandboxView {
  return {
    id: r.id,
    vm: r.vm,
    template: r.template,
    metadata: r.metadata,
    envVars: r.envVars,
    accessToken: r.accessToken,
    state: vm.state === "paused" ? "paused" : "running",
    vmState: vm.state,
    startedAt: r.startedAt,
    endAt: r.endAt,
    autoPause: r.autoPause,
    cpus: vm.cpus,
    memoryBytes: vm.memoryBytes,
    diskBytes: vm.diskBytes,
  };
}

export function getSandbox(ctx: DaemonContext, id: string): SandboxRecord {
  const s = ctx.store.sandboxes.get(id);
  if (!s) throw notFound(`sandbox ${id}`, "see GET /v2/sandboxes, or `banger vm ls`");
  return s;
}

export function showSandbox(ctx: DaemonContext, id: string): SandboxView {
  const s = getSandbox(ctx, id);
  return sandboxView(s, getVm(ctx, s.vm));
}

export function listSandboxes(ctx: DaemonContext): SandboxView[] {
  const vms = new Map(ctx.store.listVms().map((v) => [v.name, v]));
  return ctx.store.sandboxes.list().flatMap((s) => {
    const vm = vms.get(s.vm);
    return vm ? [sandboxView(s, vm)] : [];
  });
}

const endAtFrom = (timeoutMs: number) => new Date(Date.now() + timeoutMs).toISOString();

export interface NewSandbox {
  template?: string;
  timeoutMs: number;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  autoPause: boolean;
  secure: boolean;
  /** False: the VM gets net policy `none` (a snapshot's restore keeps the snapshot's). */
  internet: boolean;
}

/**
 * A template names an image ("base" or none: the default image) or, failing that, a snapshot
 * (what Sandbox.createSnapshot returned): the sandbox restores it.
 */
function templateSource(ctx: DaemonContext, template: string | undefined): { image?: string; snapshot?: string } {
  if (template === undefined || (template === BASE_TEMPLATE && !ctx.store.getImage(template))) return {};
  if (!ctx.store.getImage(template) && ctx.store.snapshots.get(template)) return { snapshot: template };
  return { image: template };
}

/** Records the sandbox row and labels its VM; a failure removes the VM (nothing half made stays). */
async function adopt(ctx: DaemonContext, vm: VmRecord, s: Omit<SandboxRecord, "vm" | "startedAt">): Promise<SandboxRecord> {
  try {
    const record: SandboxRecord = { ...s, vm: vm.name, startedAt: new Date().toISOString() };
    ctx.store.transaction(() => {
      ctx.store.updateVm(vm.name, { config: { ...vm.config, sandbox: s.id } });
      ctx.store.sandboxes.insert(record);
    });
    ctx.sandboxes.changed();
    return record;
  } catch (err) {
    await removeVm(ctx, vm.name, { force: true, kill: true }).catch(() => undefined);
    throw err;
  }
}

export async function createSandbox(ctx: DaemonContext, p: NewSandbox, call: CallEnv): Promise<SandboxView> {
  const id = newSandboxId((n) => ctx.store.getVm(n) !== undefined || ctx.store.sandboxes.get(n) !== undefined);
  const source = templateSource(ctx, p.template);
  const vm = source.snapshot
    ? await createFromSnapshot(ctx, { name: id, fromSnapshot: source.snapshot }, call)
    : await createVm(ctx, { name: id, image: source.image, ...(p.internet ? {} : { net: "none" as const }) }, call);
  const fromPool = "fromPool" in vm && vm.fromPool === true;
  const record = await adopt(ctx, vm, {
    id,
    template: p.template ?? BASE_TEMPLATE,
    metadata: p.metadata,
    envVars: p.envVars,
    accessToken: p.secure ? newAccessToken() : null,
    endAt: endAtFrom(p.timeoutMs),
    autoPause: p.autoPause,
  });
  const view = sandboxView(record, getVm(ctx, id));
  return fromPool ? { ...view, fromPool: true } : view;
}

export async function killSandbox(ctx: DaemonContext, id: string): Promise<{ removed: string }> {
  const s = getSandbox(ctx, id);
  await removeVm(ctx, s.vm, { force: true, kill: true });
  ctx.store.sandboxes.delete(id); // the VM's row took it along; a row left without its VM goes too
  ctx.sandboxes.changed();
  return { removed: id };
}

export function setSandboxTimeout(ctx: DaemonContext, id: string, timeoutMs: number): SandboxView {
  getSandbox(ctx, id);
  ctx.store.sandboxes.setEndAt(id, endAtFrom(timeoutMs));
  ctx.sandboxes.changed();
  return showSandbox(ctx, id);
}

/** Running again (resumed when paused, started when stopped); the expiry only ever moves later. */
export async function connectSandbox(ctx: DaemonContext, id: string, timeoutMs: number | undefined, call: CallEnv): Promise<SandboxView> {
  const s = getSandbox(ctx, id);
  const vm = getVm(ctx, s.vm);
  const wasRunning = vm.state === "running";
  if (vm.state === "paused") await resumeVm(ctx, vm.name);
  else if (!wasRunning) await startVm(ctx, vm.name, call);
  if (timeoutMs !== undefined) {
    const wanted = endAtFrom(timeoutMs);
    // A sandbox woken from a pause gets the new expiry (its old one has passed); a running one is only extended.
    if (!wasRunning || wanted > s.endAt) ctx.store.sandboxes.setEndAt(id, wanted);
  }
  ctx.sandboxes.changed();
  return showSandbox(ctx, id);
}

export async function pauseSandbox(ctx: DaemonContext, id: string): Promise<SandboxView> {
  const s = getSandbox(ctx, id);
  if (getVm(ctx, s.vm).state === "paused") throw new BangerError(ErrorCode.InUse, `sandbox ${id} is already paused`, "connect to it to resume it");
  await pauseVm(ctx, s.vm);
  ctx.sandboxes.changed();
  return showSandbox(ctx, id);
}

/** Forks of a running sandbox: new sandboxes with its template, metadata and envVars, each its own token. */
export async function forkSandbox(ctx: DaemonContext, id: string, count: number, timeoutMs: number, call: CallEnv): Promise<SandboxView[]> {
  const parent = getSandbox(ctx, id);
  const names: string[] = [];
  const taken = (n: string) => names.includes(n) || ctx.store.getVm(n) !== undefined || ctx.store.sandboxes.get(n) !== undefined;
  for (let i = 0; i < count; i++) names.push(newSandboxId(taken));
  const forked = await forkVm(ctx, parent.vm, { names }, call);
  const views: SandboxView[] = [];
  for (const child of forked.children) {
    const record = await adopt(ctx, child, {
      id: child.name,
      template: parent.template,
      metadata: parent.metadata,
      envVars: parent.envVars,
      accessToken: parent.accessToken === null ? null : newAccessToken(),
      endAt: endAtFrom(timeoutMs),
      autoPause: parent.autoPause,
    });
    views.push(sandboxView(record, getVm(ctx, child.name)));
  }
  return views;
}

/** A snapshot of the running sandbox (named, or `<id>-<8 hex>`), which a sandbox create restores. */
export async function snapshotSandbox(ctx: DaemonContext, id: string, name: string | undefined, call: CallEnv): Promise<{ snapshot: string; sandbox: string }> {
  const s = getSandbox(ctx, id);
  const snapshot = name ?? `${id}-${randomBytes(4).toString("hex")}`;
  await snapshotVm(ctx, s.vm, snapshot, call);
  return { snapshot, sandbox: id };
}

/** The longest a timer waits before looking again (setTimeout's limit is ~24.8 days). */
const MAX_WAIT_MS = 60 * 60 * 1000;
/** After a failed expiry, the next attempt waits this long (never a busy loop). */
const RETRY_MS = 5000;

/**
 * Expires sandboxes: one timer, set for the earliest expiry of a sandbox that is not paused
 * (a paused sandbox waits for a connect), and set again on every change.
 */
export class SandboxClock {
  private ctx: DaemonContext | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly failedAt = new Map<string, number>();

  start(ctx: DaemonContext): void {
    this.ctx = ctx;
    this.changed();
  }

  close(): void {
    this.ctx = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A sandbox was made, removed, paused, resumed or got a new expiry: look again. */
  changed(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    clearTimeout(this.timer);
    const now = Date.now();
    let next = now + MAX_WAIT_MS;
    for (const s of listSandboxes(ctx)) {
      if (s.state === "paused") continue;
      const at = Math.max(Date.parse(s.endAt), (this.failedAt.get(s.id) ?? 0) + RETRY_MS);
      next = Math.min(next, at);
    }
    this.timer = setTimeout(() => void this.expire(), Math.max(0, next - now));
    this.timer.unref();
  }

  /** Removes (or pauses) every sandbox whose time has come; one pass at a time. */
  private async expire(): Promise<void> {
    const ctx = this.ctx;
    if (!ctx || this.running) return;
    this.running = (async () => {
      const now = Date.now();
      for (const s of listSandboxes(ctx)) {
        if (Date.parse(s.endAt) > now || s.state === "paused") continue;
        if ((this.failedAt.get(s.id) ?? 0) + RETRY_MS > now) continue;
        try {
          if (s.autoPause) {
            await pauseVm(ctx, s.vm);
            ctx.log.info("sandbox expired: paused", { sandbox: s.id });
          } else {
            await removeVm(ctx, s.vm, { force: true, kill: true });
            ctx.store.sandboxes.delete(s.id);
            ctx.log.info("sandbox expired: removed", { sandbox: s.id });
          }
          this.failedAt.delete(s.id);
        } catch (err) {
          if (!ctx.store.sandboxes.get(s.id)) continue; // removed meanwhile
          this.failedAt.set(s.id, Date.now());
          ctx.log.warn("sandbox expiry failed", { sandbox: s.id, error: errorLine(err) });
        }
      }
    })();
    try {
      await this.running;
    } finally {
      this.running = undefined;
      this.changed();
    }
  }
}
