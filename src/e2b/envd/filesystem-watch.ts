// envd's directory watching over the daemon's vm.fs.watch: WatchDir (a server stream: a
// start event, then changes, with keepalives while quiet) and the polling trio CreateWatcher /
// GetWatcherEvents / RemoveWatcher. Events wait in a bounded queue; a consumer that falls
// behind stalls the guest's watch (whose kernel queue then drops), never this process.
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { FsEvent, FsStreamEvent } from "../../api/index.ts";
import { EventType, type Filesystem, type FilesystemEventSchema } from "../gen/filesystem_pb.ts";
import type { EnvdDeps } from "./context.ts";
import { callDaemon, entryInfo, sandboxOf, toConnectError, userFromHeaders } from "./filesystem-shared.ts";

/** Events held per watch before the guest is made to wait. */
const MAX_QUEUED = 1024;
/** A polling watcher nobody asked about for this long is stopped. */
const WATCHER_IDLE_MS = 10 * 60_000;
/** Watchers at once over all sandboxes (the daemon also caps watches per VM). */
const MAX_WATCHERS = 256;
const EVENT_TYPES: Record<FsEvent["type"], EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
};

type Event = MessageInitShape<typeof FilesystemEventSchema>;

/** A bounded FIFO: push waits while it is full; the consumer waits (with a timeout) while it is empty. */
class EventQueue<T> {
  private items: T[] = [];
  private wakeConsumer: (() => void) | undefined;
  private wakeProducers: Array<() => void> = [];
  ended = false;
  error: unknown;

  async push(v: T): Promise<void> {
    while (this.items.length >= MAX_QUEUED && !this.ended) await new Promise<void>((r) => this.wakeProducers.push(r));
    if (this.ended) return;
    this.items.push(v);
    this.wakeConsumer?.();
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.wakeConsumer?.();
    for (const w of this.wakeProducers.splice(0)) w();
  }

  /** Everything queued now. */
  drain(): T[] {
    const out = this.items;
    this.items = [];
    for (const w of this.wakeProducers.splice(0)) w();
    return out;
  }

  /** The next item; undefined after `ms` of quiet or once ended and empty. */
  async next(ms: number): Promise<T | undefined> {
    if (this.items.length === 0 && !this.ended) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        this.wakeConsumer = () => (clearTimeout(t), resolve());
      });
      this.wakeConsumer = undefined;
    }
    const v = this.items.shift();
    if (v !== undefined) for (const w of this.wakeProducers.splice(0)) w();
    return v;
  }
}

interface RunningWatch {
  queue: EventQueue<Event>;
  stop(): void;
}

/** Starts vm.fs.watch for a request; resolves once the guest watches, or throws its Connect error. */
async function startWatch(deps: EnvdDeps, headers: Headers, req: { path: string; recursive: boolean; includeEntry: boolean }, signal?: AbortSignal): Promise<RunningWatch & { sandbox: string }> {
  const user = userFromHeaders(headers);
  const sandbox = await sandboxOf(deps, headers);
  const ac = new AbortController();
  const stop = () => ac.abort();
  signal?.addEventListener("abort", stop, { once: true });
  const queue = new EventQueue<Event>();
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const event = async (ev: FsEvent): Promise<Event> => {
    const out: Event = { name: ev.name, type: EVENT_TYPES[ev.type] };
    if (req.includeEntry && ev.type !== "remove" && ev.type !== "rename") {
      const path = ev.name === "" ? req.path : `${req.path.replace(/\/+$/, "")}/${ev.name}`;
      out.entry = await callDaemon(deps, "vm.fs.stat", { name: sandbox.vm, user, path }, { signal: ac.signal }).then(entryInfo, () => undefined);
    }
    return out;
  };
  const call = callDaemon(
    deps,
    "vm.fs.watch",
    { name: sandbox.vm, user, path: req.path, recursive: req.recursive },
    {
      signal: ac.signal,
      emit: async (raw) => {
        const ev = raw as FsStreamEvent;
        if (ev.t === "started") markStarted();
        else if (ev.t === "fs") await queue.push(await event(ev));
      },
    },
  );
  call.then(
    () => queue.end(),
    (err) => queue.end(ac.signal.aborted ? undefined : err),
  );
  const first = await Promise.race([started.then(() => "started" as const), call.then(() => "ended" as const)]);
  if (first === "ended") queue.end();
  return {
    sandbox: sandbox.id,
    queue,
    stop: () => {
      signal?.removeEventListener("abort", stop);
      stop();
    },
  };
}

type WatchMethods = Pick<ServiceImpl<typeof Filesystem>, "watchDir" | "createWatcher" | "getWatcherEvents" | "removeWatcher">;

export function watchService(deps: EnvdDeps): WatchMethods {
  const watchers = new Map<string, RunningWatch & { sandbox: string; lastPoll: number }>();
  /** createWatcher calls between their check and their entry in `watchers`. */
  let starting = 0;
  const sweep = () => {
    const now = Date.now();
    for (const [id, w] of watchers) {
      if (now - w.lastPoll > WATCHER_IDLE_MS) {
        w.stop();
        watchers.delete(id);
      }
    }
  };
  const watcherOf = async (ctx: HandlerContext, id: string) => {
    const sandbox = await sandboxOf(deps, ctx.requestHeader);
    const w = watchers.get(id);
    if (!w || w.sandbox !== sandbox.id) throw new ConnectError(`watcher ${JSON.stringify(id.slice(0, 64))} not found`, Code.NotFound);
    return w;
  };
  return {
    async *watchDir(req, ctx) {
      let watch: RunningWatch;
      try {
        watch = await startWatch(deps, ctx.requestHeader, req, ctx.signal);
      } catch (err) {
        throw toConnectError(err);
      }
      try {
        yield { event: { case: "start", value: {} } };
        const keepaliveMs = keepaliveInterval(ctx.requestHeader);
        for (;;) {
          const ev = await watch.queue.next(keepaliveMs);
          if (ev) yield { event: { case: "filesystem", value: ev } };
          else if (!watch.queue.ended) yield { event: { case: "keepalive", value: {} } };
          else if (watch.queue.error !== undefined) throw toConnectError(watch.queue.error);
          else return;
        }
      } finally {
        watch.stop();
      }
    },
    async createWatcher(req, ctx) {
      sweep();
      // Counted with the ones still starting: concurrent calls cannot all pass the check first.
      if (watchers.size + starting >= MAX_WATCHERS) throw new ConnectError(`${MAX_WATCHERS} watchers are running`, Code.ResourceExhausted);
      starting++;
      try {
        const watch = await startWatch(deps, ctx.requestHeader, req);
        const id = randomUUID();
        watchers.set(id, { ...watch, lastPoll: Date.now() });
        return { watcherId: id };
      } catch (err) {
        throw toConnectError(err);
      } finally {
        starting--;
      }
    },
    async getWatcherEvents(req, ctx) {
      sweep();
      const w = await watcherOf(ctx, req.watcherId);
      w.lastPoll = Date.now();
      const events = w.queue.drain();
      if (events.length === 0 && w.queue.ended) {
        watchers.delete(req.watcherId);
        if (w.queue.error !== undefined) throw toConnectError(w.queue.error);
      }
      return { events };
    },
    async removeWatcher(req, ctx) {
      const w = await watcherOf(ctx, req.watcherId);
      w.stop();
      watchers.delete(req.watcherId);
      return {};
    },
  };
}

/** The SDK asks for a keepalive every N seconds (its Keepalive-Ping-Interval header); default 50. */
function keepaliveInterval(headers: Headers): number {
  const s = Number(headers.get("keepalive-ping-interval") ?? "50");
  return Number.isFinite(s) && s >= 1 ? Math.min(s, 300) * 1000 : 50_000;
}
