// A long call's progress on the page (a pull, creating a VM): a bar and a label fed by the
// task's events, ending in "done" or the daemon's error with its hint. Tests read the
// data-* attributes: state, percent, what the daemon itself reported, events seen.
import { followTask, type Task, type TaskUpdate } from "./api.ts";
import { badge, bytes, errorBox, fill, h } from "./dom.ts";

/** Shows `task` in `cell` until it ends; `onEnd` gets the final state. */
export function showTask<R>(cell: HTMLElement, task: Task<R>, onEnd: (task: TaskUpdate<R>) => void): void {
  const bar = h("progress", { max: 100 });
  const label = h("span", { class: "label" });
  fill(cell, bar, label);
  let best = 0;
  let events = 0;
  const show = (t: TaskUpdate<R>) => {
    const p = t.progress;
    if (p?.total) best = Math.max(best, Math.floor((100 * (p.done ?? 0)) / p.total));
    // What the daemon itself reported, before "done" rounds the bar up.
    if (p) cell.dataset.reported = String(best);
    cell.dataset.events = String(++events);
    if (t.state === "done") best = 100;
    // Phases without counts (booting) show a moving bar rather than a stuck 0%.
    if (p?.total || t.state !== "running") bar.value = best;
    else bar.removeAttribute("value");
    cell.dataset.percent = String(best);
    cell.dataset.state = t.state;
    if (t.state === "failed") fill(cell, errorBox(t.error?.message ?? "failed", t.error?.hint));
    else if (t.state === "done") fill(label, badge("done"), " 100%");
    else fill(label, phaseText(t));
    if (t.state !== "running") onEnd(t);
  };
  show(task);
  if (task.state === "running") followTask(task.id, show);
}

function phaseText(t: TaskUpdate): string {
  const p = t.progress;
  if (!p) return "starting…";
  const amount = p.total ? `${Math.floor((100 * (p.done ?? 0)) / p.total)}%` : p.done ? (p.unit ? `${p.done} ${p.unit}` : bytes(p.done)) : "";
  return [p.phase, p.message, amount].filter((s) => s).join(" · ");
}
