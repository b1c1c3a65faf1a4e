// Taps for VMs, and a pool of pre-created ones so `vm create` does not wait for tap setup.
// A pooled tap is already attached to the bridge and up; acquire() hands one out at once
// and refills the pool in the background.
import { BangerError, ErrorCode } from "../util/errors.ts";
import { validateIfname, listLinks } from "./bridge.ts";
import { netRun, type NetTarget } from "./exec.ts";

export const DEFAULT_TAP_PREFIX = "bgrtap";

/** Creates a tap attached to `bridge` and up, in one `ip -batch` process. */
export async function createTap(target: NetTarget, name: string, bridge: string): Promise<void> {
  validateIfname(name, "tap name");
  validateIfname(bridge, "bridge name");
  const batch = [`tuntap add dev ${name} mode tap`, `link set ${name} master ${bridge}`, `link set ${name} up`].join("\n");
  const res = await netRun(target, ["ip", "-batch", "-"], `${batch}\n`);
  if (res.code !== 0) {
    await deleteTap(target, name).catch(() => undefined);
    throw new BangerError(ErrorCode.Failed, `cannot create tap ${name}: ${res.stderr.trim().split("\n").pop() ?? ""}`, "is banger running as root, and is the tun module available (modprobe tun)?");
  }
}

/** Deletes a tap; one that is already gone is fine. */
export async function deleteTap(target: NetTarget, name: string): Promise<void> {
  validateIfname(name, "tap name");
  const res = await netRun(target, ["ip", "link", "del", name]);
  if (res.code !== 0 && !/Cannot find device|does not exist/.test(res.stderr)) {
    throw new BangerError(ErrorCode.Failed, `cannot delete tap ${name}: ${res.stderr.trim()}`);
  }
}

/** Names of existing taps with banger's prefix (for reconciliation at daemon start). */
export async function listTaps(target: NetTarget, prefix = DEFAULT_TAP_PREFIX): Promise<string[]> {
  const links = await listLinks(target);
  return links.filter((l) => l.ifname.startsWith(prefix) && l.linkinfo?.info_kind === "tun").map((l) => l.ifname);
}

/** Deletes every prefixed tap not in `keep` (taps of VMs that are gone, or an old pool). */
export async function sweepTaps(target: NetTarget, keep: Iterable<string>, prefix = DEFAULT_TAP_PREFIX): Promise<string[]> {
  const keepSet = new Set(keep);
  const removed: string[] = [];
  for (const name of await listTaps(target, prefix)) {
    if (keepSet.has(name)) continue;
    await deleteTap(target, name);
    removed.push(name);
  }
  return removed;
}

export interface TapPoolOptions {
  target: NetTarget;
  bridge: string;
  /** Idle taps kept ready. Default 2. */
  size?: number;
  prefix?: string;
  /** Names already in use by VMs (never reused by the pool). */
  inUse?: Iterable<string>;
  /** Called with a background refill failure (the pool keeps working on demand). */
  onError?: (err: unknown) => void;
}

export class TapPool {
  readonly #target: NetTarget;
  readonly #bridge: string;
  readonly #size: number;
  readonly #prefix: string;
  readonly #onError: (err: unknown) => void;
  readonly #idle: string[] = [];
  /** Every name this pool created or was told about, so a new tap never collides. */
  readonly #names = new Set<string>();
  #refill: Promise<void> | undefined;
  #closed = false;

  constructor(opts: TapPoolOptions) {
    this.#target = opts.target;
    this.#bridge = validateIfname(opts.bridge, "bridge name");
    this.#size = opts.size ?? 2;
    this.#prefix = opts.prefix ?? DEFAULT_TAP_PREFIX;
    this.#onError = opts.onError ?? (() => undefined);
    for (const n of opts.inUse ?? []) this.#names.add(n);
  }

  /** Idle taps ready to hand out. */
  get idle(): readonly string[] {
    return [...this.#idle];
  }

  /** Creates taps until `size` are idle; resolves when done. */
  async fill(): Promise<void> {
    while (!this.#closed && this.#idle.length < this.#size) {
      this.#idle.push(await this.#create());
    }
  }

  /** A tap attached to the bridge and up: from the pool when one is idle, else made now. */
  async acquire(): Promise<string> {
    if (this.#closed) throw new BangerError(ErrorCode.Unavailable, "tap pool is closed");
    const tap = this.#idle.shift() ?? (await this.#create());
    this.#startRefill();
    return tap;
  }

  /** Gives a VM's tap back: it is deleted (a used tap may carry the last guest's state). */
  async release(name: string): Promise<void> {
    this.#names.delete(name);
    await deleteTap(this.#target, name);
  }

  /** Waits for a background refill, then deletes every idle tap. VMs' taps are left alone. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refill;
    for (const name of this.#idle.splice(0)) {
      this.#names.delete(name);
      await deleteTap(this.#target, name);
    }
  }

  /** Resolves when any background refill has finished (tests and shutdown). */
  async settled(): Promise<void> {
    await this.#refill;
  }

  #startRefill(): void {
    if (this.#refill || this.#closed) return;
    // Deferred a tick: spawning `ip` is itself ~1 ms of synchronous work the caller should not pay.
    this.#refill = new Promise((r) => setImmediate(r))
      .then(() => this.fill())
      .catch((err) => this.#onError(err))
      .finally(() => (this.#refill = undefined));
  }

  async #create(): Promise<string> {
    const name = this.#nextName();
    this.#names.add(name);
    try {
      await createTap(this.#target, name, this.#bridge);
    } catch (err) {
      this.#names.delete(name);
      throw err;
    }
    return name;
  }

  #nextName(): string {
    for (let i = 0; ; i++) {
      const name = `${this.#prefix}${i}`;
      if (!this.#names.has(name)) return validateIfname(name, "tap name");
    }
  }
}
