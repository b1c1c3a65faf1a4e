// Banger: the SDK's entry point, one connection to bangerd for a state root (started in the
// background when none runs, as the CLI does: launch/), and the collections a program uses.
import type { Client, ImageView, SnapshotView, VmCreateParams, VmView } from "../api/index.ts";
import { resolvePaths } from "../config/index.ts";
import { connectOrStart } from "../launch/index.ts";
import { Vm } from "./vm.ts";

export interface ConnectOptions {
  /** The state root (default: $BANGER_HOME, else the system's /var/lib/banger). */
  home?: string;
  /** Environment a daemon started for this root gets (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Where one-line notes go (a daemon of another build was replaced...); default stderr. */
  onNote?: (line: string) => void;
}

export type CreateOptions = VmCreateParams;

export class Banger {
  readonly vms: Vms;
  readonly images: Images;
  readonly snapshots: Snapshots;

  private constructor(
    /** The typed RPC client (api/'s Methods): every daemon method, for what the SDK does not wrap. */
    readonly rpc: Client,
  ) {
    this.vms = new Vms(rpc);
    this.images = new Images(rpc);
    this.snapshots = new Snapshots(rpc);
  }

  /** Connects to bangerd for the root, starting it when nothing answers. */
  static async connect(opts: ConnectOptions = {}): Promise<Banger> {
    const env = opts.home === undefined ? (opts.env ?? process.env) : { ...(opts.env ?? process.env), BANGER_HOME: opts.home };
    const note = opts.onNote ?? ((line: string) => void process.stderr.write(`banger: ${line}\n`));
    return new Banger(await connectOrStart(resolvePaths(env), 15_000, note, env));
  }

  /** Closes the connection (calls in flight fail; VMs keep running). */
  close(): void {
    this.rpc.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

export class Vms {
  constructor(private readonly rpc: Client) {}

  /** Creates and boots a VM (default image and kernel unless named). */
  async create(opts: CreateOptions = {}): Promise<Vm> {
    const { fromPool: _fromPool, ...view } = await this.rpc.call("vm.create", opts);
    return new Vm(this.rpc, view);
  }

  /** The VM called `name`; rejects with NotFound when there is none. */
  async get(name: string): Promise<Vm> {
    return new Vm(this.rpc, await this.rpc.call("vm.show", { name }));
  }

  list(): Promise<VmView[]> {
    return this.rpc.call("vm.list");
  }
}

export class Images {
  constructor(private readonly rpc: Client) {}

  list(): Promise<ImageView[]> {
    return this.rpc.call("image.list");
  }
}

export class Snapshots {
  constructor(private readonly rpc: Client) {}

  list(): Promise<SnapshotView[]> {
    return this.rpc.call("snapshot.list");
  }

  /** Removes a snapshot (refused while VMs restored from it exist, unless `force`). */
  async rm(name: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.rpc.call("snapshot.rm", { name, force: opts.force });
  }
}
