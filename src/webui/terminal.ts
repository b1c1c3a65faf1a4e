// The browser terminal: one WebSocket bridged to one streaming daemon call (`vm.exec` with
// a PTY for a shell, or `session.attach`), exactly as the CLI's `vm shell`/`session attach`.
// The shell names no user or directory: the daemon's vm.exec lands it where `vm run` would
// (daemon/landing.ts), the image's user in /workspace when there is one.
//
// Browser → server: binary frames are keystrokes; text frames are JSON control messages
// ({"t":"resize","rows":R,"cols":C}). Server → browser: binary frames are terminal output;
// one text frame {"t":"exit",...} (or {"t":"error",...}) ends the call, then the socket closes.
import type { WebSocket } from "ws";
import { outBytes, type StreamInput, type TerminalControl, type TerminalMessage, type TerminalMethod } from "../api/index.ts";
import { type DaemonTable, errorBody, InputQueue, invoke } from "./invoke.ts";

/** Keystrokes sent and not yet taken by the guest before we stop reading the socket. */
const INPUT_WINDOW_BYTES = 1024 * 1024;
/** Largest terminal the page may ask for. */
const MAX_ROWS = 500;
const MAX_COLS = 1000;

export const LOGIN_SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"];

export function terminalSize(rows: unknown, cols: unknown): { rows: number; cols: number } {
  const clamp = (v: unknown, max: number, fallback: number) => {
    const n = Number(v);
    return Number.isInteger(n) && n >= 1 ? Math.min(n, max) : fallback;
  };
  return { rows: clamp(rows, MAX_ROWS, 24), cols: clamp(cols, MAX_COLS, 80) };
}

/** Runs `method` with `params` for as long as the socket is open. */
export function bridgeTerminal(ws: WebSocket, methods: DaemonTable, method: TerminalMethod, params: Record<string, unknown>, onError: (err: unknown) => void): void {
  const abort = new AbortController();
  const input = new InputQueue<StreamInput>();
  let unacked = 0;
  const raw = (ws as unknown as { _socket?: { pause(): void; resume(): void } })._socket;
  const sendText = (msg: TerminalMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  };

  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      unacked += bytes.length;
      if (unacked > INPUT_WINDOW_BYTES) raw?.pause();
      if (!input.push({ t: "in", b64: bytes.toString("base64") })) ws.close(1008, "too much input");
      return;
    }
    const msg = parseControl(data.toString());
    if (msg) input.push(msg);
  });
  ws.on("close", () => abort.abort());
  ws.on("error", () => abort.abort());

  void invoke(methods, method, params, {
    signal: abort.signal,
    input,
    emit: (event) => {
      if (event.t === "ack") {
        unacked -= event.n;
        if (unacked <= INPUT_WINDOW_BYTES) raw?.resume();
      } else if (event.t === "out" && ws.readyState === ws.OPEN) {
        const out = outBytes(event);
        // Resolving after the write keeps a slow browser from piling output up in memory.
        if (out) return new Promise<void>((resolve) => ws.send(out.data, { binary: true }, () => resolve()));
      }
      return undefined;
    },
  })
    .then(
      (status) => sendText({ t: "exit", status }),
      (err: unknown) => {
        if (abort.signal.aborted) return;
        onError(err);
        sendText({ t: "error", ...errorBody(err).error });
      },
    )
    .finally(() => ws.close(1000));
}

/** Only the control messages the daemon's stream input knows, with sane numbers. */
function parseControl(text: string): TerminalControl | undefined {
  let msg: { t?: unknown; rows?: unknown; cols?: unknown; name?: unknown };
  try {
    msg = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (msg?.t === "resize") return { t: "resize", ...terminalSize(msg.rows, msg.cols) };
  if (msg?.t === "signal" && typeof msg.name === "string" && /^SIG[A-Z0-9]{1,8}$/.test(msg.name)) return { t: "signal", name: msg.name };
  return undefined;
}
