// The page frame's shared parts and the operations page; the other pages live beside it:
// vms.ts (the list and the create form), vm.ts (one VM), images.ts (images and kernels).
// Each page returns its element and a dispose function that stops its timers and streams.
import { api, hintOf } from "./api.ts";
import { badge, duration, errorBox, fill, h, table, when } from "./dom.ts";

export interface Page {
  el: HTMLElement;
  dispose(): void;
}

/** How often pages refresh what has no live feed. */
export const REFRESH_MS = 3000;

/** An API call's error where its answer would have been: the daemon's line and hint. */
export function errorLine(err: Error): HTMLElement {
  return errorBox(err.message, hintOf(err));
}

// --- operations --------------------------------------------------------------------------

export function operationsPage(): Page {
  const list = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const load = () =>
    api("GET /api/operations", { query: { limit: "100" } }).then(
      (ops) =>
        fill(
          list,
          table(
            ["#", "Operation", "Target", "State", "Started", "Took", "Error"],
            ops.map((o) => [
              `#${o.id}`,
              o.kind,
              o.target,
              badge(o.state === "running" ? "running-op" : o.state),
              when(o.startedAt),
              o.finishedAt ? duration((Date.parse(o.finishedAt) - Date.parse(o.startedAt)) / 1000) : "…",
              o.error ? h("span", { class: "error-text wrap" }, o.error) : "",
            ]),
            "No operations yet.",
          ),
        ),
      (err: Error) => fill(list, errorLine(err)),
    );
  void load();
  const timer = setInterval(() => void load(), REFRESH_MS);
  return { el: h("div", {}, h("h1", {}, "Recent operations"), h("section", { class: "card" }, list)), dispose: () => clearInterval(timer) };
}
