// Talking to the dashboard's JSON API: the browser login's CSRF token on every mutating request,
// errors turned into exceptions carrying the daemon's message and hint. Requests name their
// route as api/web.ts's WebRoutes does ("GET /api/vms/:name"), so each answer has its type.
import type { DashboardVm as Vm, TaskView as Task, WebRoute, WebRoutes } from "../../api/index.ts";

let csrf: string | null = null;

/** The daemon's error: its one-line message, and its hint apart (the page shows it below). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** The hint of an error the API answered, if it had one. */
export function hintOf(err: unknown): string | undefined {
  return err instanceof ApiError ? err.hint : undefined;
}

/** Reads the browser login's CSRF token (GET /api/session); false when the browser is not signed in. */
export async function startLogin(): Promise<boolean> {
  const res = await fetch("/api/session", { credentials: "same-origin" });
  if (!res.ok) return false;
  csrf = ((await res.json()) as { csrf: string | null }).csrf;
  return true;
}

export interface Request {
  /** The route's `:name` segments (encoded here). */
  params?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
}

/** Calls `route` ("METHOD /path/:param"); resolves to what WebRoutes says it answers. */
export async function api<R extends WebRoute>(route: R, req: Request = {}): Promise<WebRoutes[R]> {
  const space = route.indexOf(" ");
  const method = route.slice(0, space);
  const query = req.query ? `?${new URLSearchParams(req.query)}` : "";
  const path = route.slice(space + 1).replace(/:(\w+)/g, (_m, name: string) => seg(req.params?.[name] ?? "")) + query;
  const body = req.body;
  const headers: Record<string, string> = {};
  if (method !== "GET" && csrf) headers["X-Banger-CSRF"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  const data = (await res.json().catch(() => null)) as { error?: { message: string; hint?: string } } | null;
  if (!res.ok) throw new ApiError(res.status, data?.error?.message ?? `HTTP ${res.status}`, data?.error?.hint);
  // The JSON is the server's answer for this route (webui/api.ts, typed against the same map).
  return data as WebRoutes[R];
}

export const seg = encodeURIComponent;

export type { Vm, Task };

type VmsListener = (vms: Vm[]) => void;
const vmsListeners = new Set<VmsListener>();
let lastVms: Vm[] | undefined;

/** The live VM list from /api/events; the indicator in the header shows the connection. */
export function connectLive(indicator: HTMLElement): void {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    indicator.className = "live on";
    indicator.textContent = "live";
  });
  source.addEventListener("error", () => {
    indicator.className = "live off";
    indicator.textContent = "reconnecting…";
  });
  source.addEventListener("vms", (ev) => {
    lastVms = JSON.parse((ev as MessageEvent<string>).data) as Vm[];
    for (const l of vmsListeners) l(lastVms);
  });
}

/** Calls `listener` with every VM list pushed (and the latest at once); returns unsubscribe. */
export function onVms(listener: VmsListener): () => void {
  vmsListeners.add(listener);
  if (lastVms) listener(lastVms);
  return () => vmsListeners.delete(listener);
}

/** Follows a task's progress events until it ends. */
export type TaskUpdate<R = unknown> = Pick<Task<R>, "state" | "progress" | "error" | "result">;

export function followTask<R>(id: string, onUpdate: (task: TaskUpdate<R>) => void): void {
  const source = new EventSource(`/api/tasks/${seg(id)}/events`);
  const handle = (ev: Event) => onUpdate(JSON.parse((ev as MessageEvent<string>).data) as Task<R>);
  source.addEventListener("progress", handle);
  source.addEventListener("end", (ev) => {
    source.close();
    handle(ev);
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) onUpdate({ state: "failed", progress: null, error: { code: 1008, name: "Unavailable", message: "lost the connection to the dashboard" } });
  });
}
