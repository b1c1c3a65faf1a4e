// Long calls started from the page (pulls, creating a VM): each runs as a task the page can
// follow over SSE, carrying the method's own progress events, then its result or error. A
// call that fails before it does any work (the daemon's own parameter checks) is answered as
// the request's error instead, so bad input is a 4xx, not a task that failed.
import type { MethodName, TaskView } from "../api/index.ts";
import { type DaemonTable, errorBody, invoke } from "./invoke.ts";

export type TaskListener = (kind: "progress" | "end", task: TaskView) => void;

/** Finished tasks kept for late readers; running ones are never dropped. */
const KEEP_FINISHED = 50;

export class Tasks {
  private readonly tasks = new Map<string, { view: TaskView; listeners: Set<TaskListener>; abort: AbortController }>();
  private next = 1;

  constructor(private readonly methods: DaemonTable) {}

  /**
   * Starts `method` as a task. Rejects with the method's error when it fails before its first
   * await on I/O (parameter checks run synchronously): that task is dropped, never listed.
   */
  async start(method: MethodName, target: string, params: unknown): Promise<TaskView> {
    const id = String(this.next++);
    const view: TaskView = { id, method, target, state: "running", progress: null, startedAt: new Date().toISOString(), finishedAt: null };
    const entry = { view, listeners: new Set<TaskListener>(), abort: new AbortController() };
    this.tasks.set(id, entry);
    const notify = (kind: "progress" | "end") => {
      for (const l of entry.listeners) l(kind, view);
    };
    let failure: { err: unknown } | undefined;
    void invoke(this.methods, method, params, {
      signal: entry.abort.signal,
      progress: (p) => {
        view.progress = p;
        notify("progress");
      },
    })
      .then(
        (result) => Object.assign(view, { state: "done", result }),
        (err: unknown) => {
          failure = { err };
          Object.assign(view, { state: "failed", error: errorBody(err).error });
        },
      )
      .finally(() => {
        view.finishedAt = new Date().toISOString();
        notify("end");
        entry.listeners.clear();
        this.dropOldFinished();
      });
    // Synchronous checks have settled once the microtasks queued by the call have run.
    await new Promise((resolve) => setImmediate(resolve));
    if (failure && view.progress === null) {
      this.tasks.delete(id);
      throw failure.err;
    }
    return view;
  }

  get(id: string): TaskView | undefined {
    return this.tasks.get(id)?.view;
  }

  /** Follows a task; returns the unsubscribe function. Ended tasks get no calls. */
  follow(id: string, listener: TaskListener): () => void {
    const entry = this.tasks.get(id);
    if (entry?.view.state !== "running") return () => undefined;
    entry.listeners.add(listener);
    return () => entry.listeners.delete(listener);
  }

  /** Cancels every running task (server closing). */
  abortAll(): void {
    for (const { abort } of this.tasks.values()) abort.abort();
  }

  private dropOldFinished(): void {
    const finished = [...this.tasks.values()].filter((t) => t.view.state !== "running");
    for (const t of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.tasks.delete(t.view.id);
  }
}
