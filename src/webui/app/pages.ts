// The four pages: VMs, one VM, images & kernels, operations. Each returns its element and
// a dispose function that stops its timers, streams and terminal.
import { api, followTask, onVms, seg, type Task, type TaskUpdate, type Vm } from "./api.ts";
import { badge, bytes, duration, fill, h, meter, since, table, toast, when, type Child } from "./dom.ts";
import { openTerminal, type TerminalView } from "./term.ts";

export interface Page {
  el: HTMLElement;
  dispose(): void;
}

/** How often the one-VM and operations pages refresh what has no live feed. */
const REFRESH_MS = 3000;

// --- VMs ---------------------------------------------------------------------------------

export function vmsPage(): Page {
  const list = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const unsubscribe = onVms((vms) =>
    fill(
      list,
      table(
        ["Name", "State", "Image", "Kernel", "Address", "Uptime", "CPU", "Memory", ""],
        vms.map((vm) => [h("a", { href: `#/vm/${seg(vm.name)}` }, vm.name), badge(vm.state), vm.image, vm.kernel, vm.ip ?? "–", uptime(vm), cpu(vm), memory(vm), vmButtons(vm, false)]),
        "No VMs yet. Create one with: banger vm create --image NAME",
        (i) => ({ "data-vm": vms[i]!.name }),
      ),
    ),
  );
  return { el: h("div", {}, h("h1", {}, "Virtual machines"), h("section", { class: "card" }, list)), dispose: unsubscribe };
}

function uptime(vm: Vm): string {
  if (vm.state !== "running") return "–";
  return vm.stats ? duration(vm.stats.uptimeSeconds) : since(vm.startedAt);
}

function cpu(vm: Vm): Child {
  const pct = vm.stats?.cpuPercent;
  if (pct === null || pct === undefined) return "–";
  return meter(pct / 100, `${pct.toFixed(0)}% of ${vm.cpus}`);
}

function memory(vm: Vm): Child {
  if (!vm.stats) return vm.state === "running" ? "–" : bytes(vm.memoryBytes);
  return meter(vm.stats.memUsedBytes / vm.stats.memTotalBytes, `${bytes(vm.stats.memUsedBytes)} / ${bytes(vm.stats.memTotalBytes)}`);
}

/** Start or Stop (and Remove on the VM's own page); disabled while the call runs. */
function vmButtons(vm: Vm, withRemove: boolean): HTMLElement {
  const act = (label: string, cls: string, run: () => Promise<unknown>) =>
    h("button", {
      class: cls,
      "data-action": label.toLowerCase(),
      onclick: async (ev: Event) => {
        const button = ev.currentTarget as HTMLButtonElement;
        button.disabled = true;
        button.textContent = `${label}…`;
        try {
          await run();
        } catch (err) {
          toast(`${label} ${vm.name}: ${(err as Error).message}`);
          button.disabled = false;
          button.textContent = label;
        }
      },
    }, label);
  const path = `/api/vms/${seg(vm.name)}`;
  const buttons: HTMLElement[] = [];
  if (vm.state === "running") buttons.push(act("Stop", "", () => api("POST", `${path}/stop`)));
  if (vm.state === "stopped" || vm.state === "crashed" || vm.state === "error") buttons.push(act("Start", "primary", () => api("POST", `${path}/start`)));
  if (withRemove) {
    buttons.push(act("Remove", "danger", async () => {
      if (!confirm(`Remove vm ${vm.name} and its disk?`)) throw new Error("not removed");
      await api("DELETE", `${path}?force=1`);
      location.hash = "#/vms";
    }));
  }
  return h("div", { class: "actions" }, ...buttons);
}

// --- one VM ------------------------------------------------------------------------------

export function vmPage(name: string): Page {
  const state = h("span");
  const actions = h("div", { class: "actions" });
  const details = h("div", { class: "grid" });
  const ports = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const sessions = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const consoleText = h("pre", { class: "console", "data-console": "" }, "Loading…");
  const termBox = h("div", { class: "term-box", hidden: true });
  let term: TerminalView | undefined;
  let vm: Vm | undefined;
  let lastState = "";

  // An ended terminal stays on screen (its last output, "[exited]") until another opens.
  let termLive = false;
  const openTerm = (path: string) => {
    term?.close();
    termBox.hidden = false;
    termButton.textContent = "Close terminal";
    termLive = true;
    const view = openTerminal(termBox, path, () => {
      if (term !== view) return; // a replaced terminal closing
      termLive = false;
      termButton.textContent = "Open terminal";
    });
    term = view;
  };
  const closeTerm = () => {
    term?.close();
    term = undefined;
    termLive = false;
    termBox.hidden = true;
    termButton.textContent = "Open terminal";
  };
  const termButton: HTMLButtonElement = h("button", {
    class: "primary",
    "data-action": "terminal",
    onclick: () => (termLive ? closeTerm() : openTerm(`/api/vms/${seg(name)}/terminal`)),
  }, "Open terminal");

  const showVm = (vms: Vm[]) => {
    vm = vms.find((v) => v.name === name);
    if (!vm) {
      fill(state, badge("removed"));
      fill(actions);
      return;
    }
    fill(state, badge(vm.state));
    // Buttons are rebuilt only when the state changes, so a click in flight keeps its button.
    if (vm.state !== lastState) fill(actions, vmButtons(vm, true));
    lastState = vm.state;
    termButton.disabled = vm.state !== "running" && !termLive;
    const field = (k: string, v: Child) => h("div", {}, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
    fill(
      details,
      field("Image", vm.image),
      field("Kernel", vm.kernel),
      field("Address", vm.ip ?? "–"),
      field("VMM", vm.vmm),
      field("CPUs", String(vm.cpus)),
      field("Memory", bytes(vm.memoryBytes)),
      field("Uptime", uptime(vm)),
      field("CPU use", cpu(vm)),
      field("Guest memory", memory(vm)),
      field("VMM RSS", bytes(vm.stats?.vmmRssBytes)),
      field("Created", when(vm.createdAt)),
      vm.stateReason ? field("Why " + vm.state, h("span", { class: "error-text" }, vm.stateReason)) : null,
      vm.error ? field("Error", h("span", { class: "error-text" }, vm.error)) : null,
    );
  };

  const refresh = async () => {
    const running = vm?.state === "running";
    const path = `/api/vms/${seg(name)}`;
    await Promise.all([
      api<{ text: string }>("GET", `${path}/console?bytes=32768`).then(
        (c) => {
          const atBottom = consoleText.scrollTop + consoleText.clientHeight >= consoleText.scrollHeight - 4;
          consoleText.textContent = stripAnsi(c.text) || "(empty)";
          if (atBottom) consoleText.scrollTop = consoleText.scrollHeight;
        },
        (err: Error) => (consoleText.textContent = err.message),
      ),
      running ? api<Port[]>("GET", `${path}/ports`).then((p) => fill(ports, portsTable(p, vm?.ip ?? null)), (err: Error) => fill(ports, errorLine(err))) : fill(ports, h("div", { class: "empty" }, "Not running.")),
      api<Session[]>("GET", `${path}/sessions`).then(
        (s) => fill(sessions, sessionsTable(s, (session) => openTerm(`${path}/sessions/${seg(session)}/attach`))),
        (err: Error) => fill(sessions, errorLine(err)),
      ),
    ]);
  };

  const unsubscribe = onVms(showVm);
  void refresh();
  const timer = setInterval(() => void refresh(), REFRESH_MS);
  const el = h(
    "div",
    {},
    h("h1", {}, h("a", { href: "#/vms" }, "VMs"), " / ", name, state, h("span", { style: "flex:1" }), actions),
    h("section", { class: "card" }, details),
    h("section", { class: "card" }, h("h2", {}, "Terminal ", termButton), termBox),
    h("div", { class: "two" }, h("section", { class: "card" }, h("h2", {}, "Listening ports"), ports), h("section", { class: "card" }, h("h2", {}, "Sessions"), sessions)),
    h("section", { class: "card" }, h("h2", {}, "Serial console"), consoleText),
  );
  return {
    el,
    dispose() {
      unsubscribe();
      clearInterval(timer);
      closeTerm();
    },
  };
}

interface Port {
  proto: string;
  address: string;
  port: number;
  command?: string;
}

interface Session {
  name: string;
  command: string;
  state: string;
  exitCode: number | null;
  createdAt: string;
}

/** Ports listening beyond the guest's loopback are reachable at the VM's address: link them. */
function portsTable(ports: Port[], ip: string | null): HTMLElement {
  const reachable = (p: Port) => ip !== null && !/^(127\.|::1$)/.test(p.address);
  return table(
    ["Port", "Address", "Process"],
    ports.map((p) => [reachable(p) ? h("a", { href: `http://${ip}:${p.port}/`, target: "_blank", rel: "noopener" }, String(p.port)) : String(p.port), `${p.proto} ${p.address}`, p.command ?? "–"]),
    "Nothing listening.",
  );
}

/** Running sessions get an Attach button that opens them in the terminal. */
function sessionsTable(sessions: Session[], attach: (name: string) => void): HTMLElement {
  return table(
    ["Name", "Command", "State", "Started", ""],
    sessions.map((s) => [
      s.name,
      h("code", { class: "command", title: s.command }, s.command),
      badge(s.exitCode === null ? s.state : `${s.state} (${s.exitCode})`),
      since(s.createdAt),
      s.state === "running" ? h("button", { "data-action": "attach", onclick: () => attach(s.name) }, "Attach") : "",
    ]),
    "No sessions.",
  );
}

function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/\r/g, "");
}

function errorLine(err: Error): HTMLElement {
  return h("div", { class: "error-text" }, err.message);
}

// --- images & kernels --------------------------------------------------------------------

interface Kernel {
  name: string;
  kernelVersion: string;
  distro: string;
  source: string;
  sizeBytes: number;
  createdAt: string;
}

interface Image {
  name: string;
  distro: string;
  kernelRef: string | null;
  source: string;
  sizeBytes: number;
  createdAt: string;
}

interface CatalogEntry {
  name: string;
  kernelVersion?: string;
  distro?: string;
  description?: string;
  sizeBytes?: number;
  state: "pulled" | "available";
}

export function imagesPage(): Page {
  const cards = {
    kernels: h("div"),
    kernelCatalog: h("div"),
    images: h("div"),
    imageCatalog: h("div"),
  };
  const load = () => {
    void api<Kernel[]>("GET", "/api/kernels").then(
      (ks) => fill(cards.kernels, table(["Name", "Version", "Distro", "Size", "Added"], ks.map((k) => [k.name, k.kernelVersion, k.distro || "–", bytes(k.sizeBytes), when(k.createdAt)]), "No kernels yet.")),
      (err: Error) => fill(cards.kernels, errorLine(err)),
    );
    void api<Image[]>("GET", "/api/images").then(
      (is) => fill(cards.images, table(["Name", "Distro", "Kernel", "Size", "Added"], is.map((i) => [i.name, i.distro || "–", i.kernelRef ?? "–", bytes(i.sizeBytes), when(i.createdAt)]), "No images yet.")),
      (err: Error) => fill(cards.images, errorLine(err)),
    );
    void api<CatalogEntry[]>("GET", "/api/kernels/catalog").then(
      (es) => fill(cards.kernelCatalog, catalogTable(es, "kernel", load)),
      (err: Error) => fill(cards.kernelCatalog, errorLine(err)),
    );
    void api<CatalogEntry[]>("GET", "/api/images/catalog").then(
      (es) => fill(cards.imageCatalog, catalogTable(es, "image", load)),
      (err: Error) => fill(cards.imageCatalog, errorLine(err)),
    );
  };
  load();
  const card = (title: string, body: HTMLElement) => h("section", { class: "card" }, h("h2", {}, title), body);
  return {
    el: h(
      "div",
      {},
      h("h1", {}, "Images & kernels"),
      h("div", { class: "two" }, card("Kernels", cards.kernels), card("Images", cards.images)),
      card("Kernel catalog", cards.kernelCatalog),
      card("Image catalog", cards.imageCatalog),
    ),
    dispose: () => undefined,
  };
}

function catalogTable(entries: CatalogEntry[], kind: "kernel" | "image", reload: () => void): HTMLElement {
  return table(
    ["Name", kind === "kernel" ? "Version" : "Distro", "Size", "Description", ""],
    entries.map((e) => [e.name, (kind === "kernel" ? e.kernelVersion : e.distro) ?? "–", bytes(e.sizeBytes), e.description ?? "", e.state === "pulled" ? badge("pulled") : pullButton(kind, e.name, reload)]),
    "The catalog is empty.",
    (i) => ({ "data-entry": entries[i]!.name }),
  );
}

/** A Pull button that turns into a progress bar fed by the task's events. */
function pullButton(kind: "kernel" | "image", name: string, reload: () => void): HTMLElement {
  const cell = h("div", { class: "pull", "data-pull": name });
  const bar = h("progress", { max: 100 });
  const label = h("span", { class: "label" });
  let best = 0;
  let events = 0;
  const show = (task: TaskUpdate) => {
    const p = task.progress;
    if (p?.total) best = Math.max(best, Math.floor((100 * (p.done ?? 0)) / p.total));
    // What the daemon itself reported, before "done" rounds the bar up (tests read these).
    if (p) cell.dataset.reported = String(best);
    cell.dataset.events = String(++events);
    if (task.state === "done") best = 100;
    bar.value = best;
    cell.dataset.percent = String(best);
    cell.dataset.state = task.state;
    if (task.state === "failed") fill(label, h("span", { class: "error-text" }, task.error?.message ?? "failed"));
    else if (task.state === "done") fill(label, badge("done"), " 100%");
    else fill(label, `${p?.phase ?? "starting"} ${p?.total ? `${best}%` : p?.done ? (p.unit ? `${p.done} ${p.unit}` : bytes(p.done)) : ""}`);
    if (task.state !== "running") setTimeout(reload, 1500);
  };
  const button = h("button", {
    class: "primary",
    "data-action": "pull",
    onclick: async () => {
      button.disabled = true;
      try {
        const task = await api<Task>("POST", `/api/${kind}s/pull`, kind === "kernel" ? { name } : { ref: name });
        fill(cell, bar, label);
        show(task);
        followTask(task.id, show);
      } catch (err) {
        button.disabled = false;
        toast(`pull ${name}: ${(err as Error).message}`);
      }
    },
  }, "Pull");
  fill(cell, button);
  return cell;
}

// --- operations --------------------------------------------------------------------------

interface Operation {
  id: number;
  kind: string;
  target: string;
  state: string;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export function operationsPage(): Page {
  const list = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const load = () =>
    api<Operation[]>("GET", "/api/operations?limit=100").then(
      (ops) =>
        fill(
          list,
          table(
            ["#", "Operation", "Target", "State", "Started", "Took", "Error"],
            ops.map((o) => [String(o.id), o.kind, o.target, badge(o.state === "running" ? "running-op" : o.state), when(o.startedAt), o.finishedAt ? duration((Date.parse(o.finishedAt) - Date.parse(o.startedAt)) / 1000) : "…", o.error ? h("span", { class: "error-text" }, o.error) : ""]),
            "No operations yet.",
          ),
        ),
      (err: Error) => fill(list, errorLine(err)),
    );
  void load();
  const timer = setInterval(() => void load(), REFRESH_MS);
  return { el: h("div", {}, h("h1", {}, "Recent operations"), h("section", { class: "card" }, list)), dispose: () => clearInterval(timer) };
}
