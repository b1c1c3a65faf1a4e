// The in-browser terminal: xterm.js on a WebSocket to /api/vms/NAME/terminal (a login shell:
// `vm.exec` with a PTY) or /api/vms/NAME/sessions/SESSION/attach (`session.attach`).
// Binary frames carry bytes; text frames control.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import type { TerminalControl, TerminalMessage } from "../../api/index.ts";

export interface TerminalView {
  close(): void;
}

/** `path` is the WebSocket's path, e.g. /api/vms/NAME/terminal. */
export function openTerminal(container: HTMLElement, path: string, onEnd: () => void): TerminalView {
  const term = new Terminal({ cursorBlink: true, fontSize: 13, fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace', theme: { background: "#0f1720" } });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  fit.fit();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${path}?rows=${term.rows}&cols=${term.cols}`);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();

  ws.addEventListener("open", () => term.focus());
  ws.addEventListener("message", (ev) => {
    if (ev.data instanceof ArrayBuffer) return term.write(new Uint8Array(ev.data));
    const msg = JSON.parse(String(ev.data)) as TerminalMessage;
    // vm.exec ends with its exit status; session.attach with whether the caller detached.
    const code = msg.t === "exit" && "exitCode" in msg.status ? msg.status.exitCode : undefined;
    if (msg.t === "exit") term.write(`\r\n\x1b[2m[exited${code !== undefined ? ` with status ${code}` : ""}]\x1b[0m\r\n`);
    if (msg.t === "error") term.write(`\r\n\x1b[31m${msg.message ?? "error"}\x1b[0m\r\n`);
  });
  ws.addEventListener("close", () => onEnd());
  term.onData((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
  });
  term.onResize(({ rows, cols }) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ t: "resize", rows, cols } satisfies TerminalControl));
  });
  const observer = new ResizeObserver(() => fit.fit());
  observer.observe(container);

  return {
    close() {
      observer.disconnect();
      ws.close();
      term.dispose();
    },
  };
}
