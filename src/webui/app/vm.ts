// One VM: its details and actions (live), terminal, listening ports, sessions and console.
import type { ListeningPort as Port, SessionView as Session } from "../../api/index.ts";
import { api, onVms, seg, type Vm } from "./api.ts";
import { badge, bytes, fill, h, since, table, when, type Child } from "./dom.ts";
import { errorLine, REFRESH_MS, type Page } from "./pages.ts";
import { openTerminal, type TerminalView } from "./term.ts";
import { cpu, memory, uptime, vmButtons } from "./vms.ts";

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
  const termButton: HTMLButtonElement = h(
    "button",
    {
      class: "primary",
      "data-action": "terminal",
      onclick: () => (termLive ? closeTerm() : openTerm(`/api/vms/${seg(name)}/terminal`)),
    },
    "Open terminal",
  );

  const showVm = (vms: Vm[]) => {
    vm = vms.find((v) => v.name === name);
    if (!vm) {
      fill(state, badge("removed"));
      fill(actions);
      return;
    }
    fill(state, badge(vm.state));
    // Buttons are rebuilt only when the state changes, so a click in flight keeps its button.
    if (vm.state !== lastState) fill(actions, vmButtons(vm, { onPage: true }));
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
      vm.stateReason ? field(`Why ${vm.state}`, h("span", { class: "error-text" }, vm.stateReason)) : null,
      vm.error ? field("Error", h("span", { class: "error-text" }, vm.error)) : null,
    );
  };

  const refresh = async () => {
    const running = vm?.state === "running";
    const path = `/api/vms/${seg(name)}`;
    await Promise.all([
      api("GET /api/vms/:name/console", { params: { name }, query: { bytes: "32768" } }).then(
        (c) => {
          const atBottom = consoleText.scrollTop + consoleText.clientHeight >= consoleText.scrollHeight - 4;
          consoleText.textContent = stripAnsi(c.text) || "(empty)";
          if (atBottom) consoleText.scrollTop = consoleText.scrollHeight;
        },
        (err: Error) => (consoleText.textContent = err.message),
      ),
      running
        ? api("GET /api/vms/:name/ports", { params: { name } }).then(
            (p) => fill(ports, portsTable(p, vm?.ip ?? null)),
            (err: Error) => fill(ports, errorLine(err)),
          )
        : fill(ports, h("div", { class: "empty" }, "Not running.")),
      api("GET /api/vms/:name/sessions", { params: { name } }).then(
        (s) =>
          fill(
            sessions,
            sessionsTable(s, (session) => openTerm(`${path}/sessions/${seg(session)}/attach`)),
          ),
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
    ["Name", "Command", "State", ""],
    sessions.map((s) => [
      s.name,
      h("code", { class: "command", title: s.command }, s.command),
      h("div", { class: "two-line" }, badge(s.exitCode === null ? s.state : `${s.state} (${s.exitCode})`), h("span", { class: "sub", title: "started" }, `${since(s.createdAt)} ago`)),
      s.state === "running" ? h("button", { "data-action": "attach", onclick: () => attach(s.name) }, "Attach") : "",
    ]),
    "No sessions.",
  );
}

function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/\r/g, "");
}
