// The VM list (live): each VM's state, use and actions (start, stop, pause, resume, remove), and
// the form that creates a VM from an installed image, with the create's progress, and the
// warm pools (ready and warming VMs per image: a create matching one is taken at once).
import { api, hintOf, onVms, seg, type Vm } from "./api.ts";
import { badge, bytes, duration, fill, h, meter, since, table, toast, type Child } from "./dom.ts";
import { errorLine, type Page } from "./pages.ts";
import { showTask } from "./progress.ts";

/** States with no VMM running: remove needs no force (the daemon's DEAD_STATES). */
const DEAD = new Set(["stopped", "crashed"]);

export function vmsPage(): Page {
  const list = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  const unsubscribe = onVms((vms) =>
    fill(
      list,
      table(
        ["Name", "State", "Image", "Address", "CPU", "Memory", ""],
        vms.map((vm) => [
          h("a", { href: `#/vm/${seg(vm.name)}`, class: "name" }, vm.name),
          h("div", { class: "two-line" }, badge(vm.state), vm.state === "running" ? h("span", { class: "sub", title: "uptime" }, `up ${uptime(vm)}`) : null),
          h("div", { class: "two-line" }, vm.image, h("span", { class: "sub", title: "kernel" }, vm.kernel)),
          vm.ip ?? "–",
          cpu(vm),
          memory(vm),
          vmButtons(vm, { onPage: false }),
        ]),
        "No VMs yet: create one above.",
        (i) => ({ "data-vm": vms[i]!.name }),
      ),
    ),
  );
  const pools = poolsCard();
  return {
    el: h("div", {}, h("h1", {}, "Virtual machines"), createForm(), h("section", { class: "card" }, list), pools.el),
    dispose: () => {
      unsubscribe();
      pools.dispose();
    },
  };
}

const POOLS_POLL_MS = 2000;

/** The warm pools (`banger pool set IMAGE --size N`), polled while the page is shown. */
function poolsCard(): { el: HTMLElement; dispose: () => void } {
  const body = h("div", { "data-pools": "" }, h("div", { class: "empty" }, "Loading…"));
  const show = async () => {
    try {
      const list = await api("GET /api/pools");
      fill(
        body,
        table(
          ["Image", "Ready", "Warming", "Each", "Held"],
          list.pools.map((p) => [
            p.image,
            `${p.ready} of ${p.size}`,
            p.warming,
            `${p.spec.cpus} CPU, ${bytes(p.spec.memoryBytes)}, net ${p.spec.net}`,
            p.lastError ? h("div", { class: "two-line" }, bytes(p.memoryBytes), h("span", { class: "sub" }, p.lastError)) : bytes(p.memoryBytes),
          ]),
          "No warm pools: `banger pool set IMAGE --size 2` keeps VMs booted ahead.",
          (i) => ({ "data-pool": list.pools[i]!.image }),
        ),
        h("p", { class: "muted" }, `${bytes(list.memoryBytes)} of ${bytes(list.maxMemoryBytes)} held (pool.max_memory)`),
      );
    } catch (err) {
      fill(body, errorLine(err as Error));
    }
  };
  void show();
  const timer = setInterval(() => void show(), POOLS_POLL_MS);
  return { el: h("section", { class: "card" }, h("h2", {}, "Warm pools"), body), dispose: () => clearInterval(timer) };
}

/** Image (installed ones, the default first), optional name, CPUs and memory; create and start. */
function createForm(): HTMLElement {
  const image = h("select", { name: "image", required: true, "aria-label": "Image" });
  const name = h("input", { name: "name", placeholder: "generated", autocomplete: "off", spellcheck: "false", "aria-label": "Name" });
  const cpus = h("input", { name: "cpus", type: "number", min: 1, max: 64, placeholder: "1", "aria-label": "CPUs" });
  const memory = h("input", { name: "memory", placeholder: "512M", autocomplete: "off", "aria-label": "Memory" });
  const submit = h("button", { class: "primary", type: "submit", "data-action": "create" }, "Create and start");
  const status = h("div", { class: "create-status", "data-create": "" });
  const field = (label: string, input: HTMLElement) => h("label", { class: "field" }, h("span", {}, label), input);
  const form = h(
    "form",
    { class: "create", onsubmit: (ev: Event) => void create(ev) },
    field("Image", image),
    field("Name", name),
    field("CPUs", cpus),
    field("Memory", memory),
    h("div", { class: "field submit" }, submit),
  );

  void Promise.all([api("GET /api/images"), api("GET /api/defaults")]).then(
    ([images, defaults]) => {
      const names = images.map((i) => i.name).sort((a, b) => Number(b === defaults.image) - Number(a === defaults.image) || a.localeCompare(b));
      fill(image, ...names.map((n) => h("option", { value: n, selected: n === defaults.image }, n === defaults.image ? `${n} (default)` : n)));
      if (names.length === 0) {
        submit.disabled = true;
        fill(status, h("span", { class: "muted" }, "No images yet: pull one on "), h("a", { href: "#/images" }, "Images & kernels"), ".");
      }
    },
    (err: Error) => fill(status, errorLine(err)),
  );

  async function create(ev: Event): Promise<void> {
    ev.preventDefault();
    const body: Record<string, unknown> = { image: image.value };
    if (name.value.trim()) body.name = name.value.trim();
    if (cpus.value.trim()) body.cpus = Number(cpus.value);
    if (memory.value.trim()) body.memory = memory.value.trim();
    submit.disabled = true;
    delete status.dataset.state;
    try {
      const task = await api("POST /api/vms", { body });
      showTask(status, task, (t) => {
        submit.disabled = false;
        const vm = t.result;
        if (t.state === "done" && vm) fill(status, badge("done"), " ", h("a", { href: `#/vm/${seg(vm.name)}` }, vm.name), ` is ${vm.state}${vm.fromPool ? `, from the ${vm.image} pool` : ""}`);
        if (t.state === "done") name.value = "";
      });
    } catch (err) {
      submit.disabled = false;
      status.dataset.state = "refused";
      fill(status, errorLine(err as Error));
    }
  }
  return h("section", { class: "card" }, h("h2", {}, "Create a VM"), form, status);
}

export function uptime(vm: Vm): string {
  if (vm.state !== "running") return "–";
  return vm.stats ? duration(vm.stats.uptimeSeconds) : since(vm.startedAt);
}

export function cpu(vm: Vm): Child {
  const pct = vm.stats?.cpuPercent;
  if (pct === null || pct === undefined) return "–";
  return meter(pct / 100, `${pct.toFixed(0)}% of ${vm.cpus}`);
}

export function memory(vm: Vm): Child {
  if (!vm.stats) return vm.state === "running" ? "–" : bytes(vm.memoryBytes);
  return meter(vm.stats.memUsedBytes / vm.stats.memTotalBytes, `${bytes(vm.stats.memUsedBytes)} / ${bytes(vm.stats.memTotalBytes)}`);
}

/** Start, Stop or Resume as the state allows, and Remove; each disabled while its call runs. */
export function vmButtons(vm: Vm, opts: { onPage: boolean }): HTMLElement {
  const act = (label: string, cls: string, run: () => Promise<unknown>) =>
    h(
      "button",
      {
        class: cls,
        "data-action": label.toLowerCase(),
        onclick: async (ev: Event) => {
          const button = ev.currentTarget as HTMLButtonElement;
          button.disabled = true;
          button.textContent = `${label}…`;
          try {
            await run();
          } catch (err) {
            if (!(err instanceof Declined)) toast(`${label} ${vm.name}: ${(err as Error).message}`, hintOf(err));
            button.disabled = false;
            button.textContent = label;
          }
        },
      },
      label,
    );
  const params = { name: vm.name };
  const buttons: HTMLElement[] = [];
  if (vm.state === "running") buttons.push(act("Pause", "", () => api("POST /api/vms/:name/pause", { params })));
  if (vm.state === "paused") buttons.push(act("Resume", "primary", () => api("POST /api/vms/:name/resume", { params })));
  if (vm.state === "running" || vm.state === "paused") buttons.push(act("Stop", "", () => api("POST /api/vms/:name/stop", { params })));
  if (vm.state === "stopped" || vm.state === "crashed" || vm.state === "error") buttons.push(act("Start", "primary", () => api("POST /api/vms/:name/start", { params })));
  buttons.push(
    act("Remove", "danger", async () => {
      const force = !DEAD.has(vm.state);
      const question = force ? `Remove vm ${vm.name}? It is ${vm.state}: it will be stopped, and its disk deleted.` : `Remove vm ${vm.name} and its disk?`;
      if (!confirm(question)) throw new Declined();
      await api("DELETE /api/vms/:name", { params, query: force ? { force: "1" } : undefined });
      if (opts.onPage) location.hash = "#/vms";
    }),
  );
  return h("div", { class: "actions" }, ...buttons);
}

/** The user said no to a confirm: nothing to report. */
class Declined extends Error {}
