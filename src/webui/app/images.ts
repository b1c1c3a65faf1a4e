// Images, kernels and snapshots: the installed ones (set default, remove; snapshots are listed
// only), the catalogs' entries with a Pull button each, and pulling an image by registry
// reference; pulls show live progress.
import type { AvailableImage, AvailableKernel } from "../../api/index.ts";
import { api, hintOf, type Task } from "./api.ts";
import { badge, bytes, fill, h, table, toast, when } from "./dom.ts";
import { errorLine, type Page } from "./pages.ts";
import { showTask } from "./progress.ts";

/** A row of either catalog: kernels have a version, images a kernel. */
type CatalogEntry = AvailableImage & Partial<Pick<AvailableKernel, "kernelVersion">>;

type Kind = "kernel" | "image";

export function imagesPage(): Page {
  const cards = { kernels: h("div"), kernelCatalog: h("div"), images: h("div"), imageCatalog: h("div"), snapshots: h("div") };
  const load = () => {
    void Promise.all([api("GET /api/kernels"), api("GET /api/images"), api("GET /api/defaults")]).then(
      ([ks, is, defaults]) => {
        fill(
          cards.kernels,
          table(
            ["Name", "Version", "Distro", "Size", "Added", ""],
            ks.map((k) => [k.name, k.kernelVersion, k.distro || "–", bytes(k.sizeBytes), when(k.createdAt), installedActions("kernel", k.name, defaults.kernel === k.name, load)]),
            "No kernels yet: pull one from the catalog below.",
            (i) => ({ "data-kernel": ks[i]!.name }),
          ),
        );
        fill(
          cards.images,
          table(
            ["Name", "Distro", "Kernel", "Size", "Added", ""],
            is.map((i) => [i.name, i.distro || "–", i.kernelRef ?? "–", bytes(i.sizeBytes), when(i.createdAt), installedActions("image", i.name, defaults.image === i.name, load)]),
            "No images yet: pull one from the catalog below.",
            (i) => ({ "data-image": is[i]!.name }),
          ),
        );
      },
      (err: Error) => [cards.kernels, cards.images].forEach((c) => void fill(c, errorLine(err))),
    );
    void api("GET /api/snapshots").then(
      (ss) =>
        fill(
          cards.snapshots,
          table(
            ["Name", "From VM", "Image", "Memory", "On disk", "Paused", "VMs", "Taken"],
            ss.map((s) => [s.name, s.sourceVm, s.image, bytes(s.memoryBytes), s.usedBytes === null ? "–" : bytes(s.usedBytes), `${s.pauseMs} ms`, s.vms.join(", ") || "–", when(s.createdAt)]),
            "No snapshots: banger vm snapshot VM --name NAME takes one.",
            (i) => ({ "data-snapshot": ss[i]!.name }),
          ),
        ),
      (err: Error) => fill(cards.snapshots, errorLine(err)),
    );
    void api("GET /api/kernels/catalog").then(
      (es) => fill(cards.kernelCatalog, catalogTable(es, "kernel", load)),
      (err: Error) => fill(cards.kernelCatalog, errorLine(err)),
    );
    void api("GET /api/images/catalog").then(
      (es) => fill(cards.imageCatalog, catalogTable(es, "image", load)),
      (err: Error) => fill(cards.imageCatalog, errorLine(err)),
    );
  };
  load();
  const card = (title: string, ...body: HTMLElement[]) => h("section", { class: "card" }, h("h2", {}, title), ...body);
  return {
    el: h(
      "div",
      {},
      h("h1", {}, "Images & kernels"),
      card("Images", cards.images),
      card("Kernels", cards.kernels),
      card("Snapshots", cards.snapshots),
      card("Image catalog", cards.imageCatalog, pullByRef(load)),
      card("Kernel catalog", cards.kernelCatalog),
    ),
    dispose: () => undefined,
  };
}

/** "default" (or Set default) and Remove, for an installed image or kernel. */
function installedActions(kind: Kind, name: string, isDefault: boolean, reload: () => void): HTMLElement {
  const act = (label: string, action: string, cls: string, run: () => Promise<unknown>) =>
    h(
      "button",
      {
        class: cls,
        "data-action": action,
        onclick: async (ev: Event) => {
          const button = ev.currentTarget as HTMLButtonElement;
          button.disabled = true;
          try {
            if (await run()) reload();
            else button.disabled = false;
          } catch (err) {
            toast(`${label} ${kind} ${name}: ${(err as Error).message}`, hintOf(err));
            button.disabled = false;
          }
        },
      },
      label,
    );
  return h(
    "div",
    { class: "actions" },
    isDefault ? badge("default") : act("Set default", "default", "", () => api("POST /api/defaults", { body: { [kind]: name } })),
    act("Remove", "remove", "danger", async () => {
      if (!confirm(`Remove ${kind} ${name}?${isDefault ? ` It is the default ${kind}: removing it unsets the default.` : ""}`)) return false;
      // Confirmed with the default named: an image is removed anyway (VMs using it still refuse);
      // a kernel is not forced, since that would also break the images booting it.
      const force = kind === "image" && isDefault ? { force: "1" } : undefined;
      return api(kind === "kernel" ? "DELETE /api/kernels/:name" : "DELETE /api/images/:name", { params: { name }, query: force });
    }),
  );
}

function catalogTable(entries: CatalogEntry[], kind: Kind, reload: () => void): HTMLElement {
  return table(
    ["Name", kind === "kernel" ? "Version" : "Distro", "Size", "Description", ""],
    entries.map((e) => [
      e.name,
      (kind === "kernel" ? e.kernelVersion : e.distro) ?? "–",
      bytes(e.sizeBytes),
      h("span", { class: "wrap" }, e.description ?? ""),
      e.state === "pulled" ? badge("pulled") : pullButton(kind, e.name, reload),
    ]),
    "The catalog is empty.",
    (i) => ({ "data-entry": entries[i]!.name }),
  );
}

/** Starts a pull and shows its task in `cell`; false when the daemon refused it at once. */
async function startPull(cell: HTMLElement, kind: Kind, body: Record<string, unknown>, what: string, reload: () => void): Promise<boolean> {
  try {
    const task: Task = await api(kind === "kernel" ? "POST /api/kernels/pull" : "POST /api/images/pull", { body });
    showTask(cell, task, () => setTimeout(reload, 1500));
    return true;
  } catch (err) {
    toast(`pull ${what}: ${(err as Error).message}`, hintOf(err));
    return false;
  }
}

/** A Pull button that turns into the pull's progress. */
function pullButton(kind: Kind, name: string, reload: () => void): HTMLElement {
  const cell = h("div", { class: "pull", "data-pull": name });
  const button = h(
    "button",
    {
      class: "primary",
      "data-action": "pull",
      onclick: async () => {
        button.disabled = true;
        if (!(await startPull(cell, kind, kind === "kernel" ? { name } : { ref: name }, name, reload))) button.disabled = false;
      },
    },
    "Pull",
  );
  fill(cell, button);
  return cell;
}

/** An image from a registry (an OCI reference, e.g. docker.io/library/alpine:3.20). */
function pullByRef(reload: () => void): HTMLElement {
  const ref = h("input", { name: "ref", placeholder: "registry reference, e.g. alpine:3.20", autocomplete: "off", spellcheck: "false", "aria-label": "Reference" });
  const name = h("input", { name: "name", placeholder: "name (optional)", autocomplete: "off", spellcheck: "false", "aria-label": "Name" });
  const submit = h("button", { class: "primary", type: "submit" }, "Pull");
  const status = h("div", { class: "pull" });
  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        if (!ref.value.trim()) return;
        submit.disabled = true;
        const body = { ref: ref.value.trim(), ...(name.value.trim() ? { name: name.value.trim() } : {}) };
        await startPull(status, "image", body, body.ref, reload);
        submit.disabled = false;
      },
    },
    ref,
    name,
    submit,
  );
  return h("div", { class: "by-ref" }, form, status);
}
