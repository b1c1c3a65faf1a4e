// How the CLI shows things: aligned tables, --json, progress on stderr (each step ending as
// its call did; piped, a line per phase and a heartbeat on long ones), and what happens when
// the reader of that output goes away (readerGone).
// Table cells, field values, JSON and progress messages can come from a guest, an image or
// a catalog: all of it goes through util/text.ts's inert() before reaching the terminal.
import { ConnectionLostError } from "../rpc/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import type { Progress, ProgressEvent } from "../util/progress.ts";
import { inert, inertJson } from "../util/text.ts";

const outputGone = new AbortController();

/**
 * Aborted once stdout or stderr cannot be written any more: its reader went away
 * (`banger vm ls | head`, a closed terminal). Calls that exist for their output (`vm logs`,
 * `vm exec`, session attach) listen to it and cancel themselves, so the daemon stops
 * streaming to no one; calls whose output is only progress go on to their end.
 */
export const readerGone: AbortSignal = outputGone.signal;

/**
 * Makes a write error on stdout or stderr end that output quietly instead of crashing the
 * CLI (an 'error' event nobody handles prints a stack trace and exits 1). EPIPE is a reader
 * that had enough, as for any Unix tool: nothing is said, and the exit status is the
 * command's. Any other write error is a real failure: exit 1, with a line on stderr if it can
 * take one. Call once, before anything is written.
 */
export function watchOutputs(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") {
        process.exitCode = 1;
        if (stream === process.stdout) process.stderr.write(`banger: cannot write the output: ${err.message}\n`);
      }
      outputGone.abort();
    });
  }
}

/** True when `err` is a call's cancellation because its output went away (see readerGone). */
export function cancelledForReader(err: unknown): boolean {
  return readerGone.aborted && err instanceof BangerError && err.code === ErrorCode.Cancelled;
}

/**
 * True when the command line asks for JSON (`--json` before any `--`: what follows `--` is the
 * guest's command). Decided from argv, not the parsed options, so that a usage error found
 * while parsing is printed as JSON too.
 */
export function jsonRequested(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).includes("--json");
}

export function printJson(value: unknown): void {
  process.stdout.write(`${inertJson(value, 2)}\n`);
}

/** Prints rows under upper-case headers, columns padded to the widest cell (each made inert, at most 128 characters). */
export function printTable(headers: string[], rows: (string | number | null | undefined)[][]): void {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === "" ? "-" : inert(c, { max: 128 }))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  for (const r of cells) {
    process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : (c ?? "").padEnd(widths[i]!))).join("  ")}\n`);
  }
}

/** Prints `key: value` lines, keys aligned. */
export function printFields(fields: [string, unknown][]): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) {
    const text = v === null || v === undefined || v === "" ? "-" : inert(typeof v === "object" ? JSON.stringify(v) : v, { max: 4096 });
    process.stdout.write(`${`${k}:`.padEnd(width + 2)}${text}\n`);
  }
}

export function age(iso: string | null | undefined): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Where a ProgressView writes: stderr, or a test's sink. */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** How often a piped ProgressView says a long phase is still running. */
const HEARTBEAT_MS = 5000;

/**
 * Renders progress events on stderr: a redrawn bar on a terminal; piped (a log, CI), one line
 * per phase change and, while a phase runs long, a heartbeat line every few seconds with its
 * latest count, never a carriage return. Each finished phase prints its duration; the last one
 * says how the call ended (see phaseEnd), never "done" for a step that failed.
 */
export class ProgressView {
  /** The running phase, already made inert. */
  private phase: string | undefined;
  private phaseStarted = 0;
  private lastDraw = 0;
  private latest: ProgressEvent | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly tty: boolean;

  constructor(
    private readonly out: ProgressSink = process.stderr,
    private readonly heartbeatMs = HEARTBEAT_MS,
  ) {
    this.tty = out.isTTY === true;
  }

  /** Runs `work` with this view as its progress, ending the last phase by how `work` ended. */
  async track<T>(work: (progress: Progress) => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await work((p) => this.update(p));
    } catch (err) {
      this.endPhase(phaseEnd(err)); // the caller prints the error line, once
      throw err;
    }
    this.endPhase(phaseEnd());
    return result;
  }

  update(p: ProgressEvent): void {
    const phase = inert(p.phase);
    this.latest = p;
    if (phase !== this.phase) {
      this.endPhase(phaseEnd()); // the daemon moved on: the previous phase succeeded
      this.phase = phase;
      this.phaseStarted = Date.now();
      if (!this.tty) {
        this.out.write(`${this.phase}${p.message ? `: ${inert(p.message)}` : ""}...\n`);
        this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
        this.heartbeat.unref();
      }
    }
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.lastDraw < 80 && p.done !== p.total) return;
    this.lastDraw = now;
    this.out.write(`\r\x1b[2K${this.describe(p)}`);
  }

  /** Piped: the running phase's latest state and how long it has run, on a line of its own. */
  private beat(): void {
    if (this.phase === undefined || this.latest === undefined) return;
    this.out.write(`${this.describe(this.latest)} (${this.elapsed()}s)\n`);
  }

  private describe(p: ProgressEvent): string {
    const msg = p.message ? ` ${inert(p.message)}` : "";
    const count = (n: number) => (p.unit ? String(n) : humanBytes(n));
    const unit = p.unit ? ` ${inert(p.unit)}` : "";
    if (p.total && p.total > 0 && p.done !== undefined) {
      const frac = Math.min(1, p.done / p.total);
      const width = 30;
      const filled = Math.round(frac * width);
      return `${this.phase} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ${count(p.done)}/${count(p.total)}${unit}${msg}`;
    }
    if (p.done !== undefined) return `${this.phase} ${count(p.done)}${unit}${msg}`;
    return `${this.phase}${msg}`;
  }

  private elapsed(): string {
    return ((Date.now() - this.phaseStarted) / 1000).toFixed(1);
  }

  private endPhase(end: { word: string; note?: string }): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.phase === undefined) return;
    this.out.write(`${this.tty ? "\r\x1b[2K" : ""}${this.phase} ${end.word} (${this.elapsed()}s${end.note ? `, ${end.note}` : ""})\n`);
    this.phase = undefined;
    this.latest = undefined;
  }
}

/**
 * How a phase ended, from how its call ended: done (no error), interrupted when the daemon
 * went away under it (nobody knows how the step ended), cancelled, or failed.
 */
export function phaseEnd(error?: unknown): { word: string; note?: string } {
  if (error === undefined) return { word: "done" };
  if (error instanceof ConnectionLostError) return { word: "interrupted", note: "daemon connection lost" };
  if (error instanceof BangerError && error.code === ErrorCode.Cancelled) return { word: "cancelled" };
  return { word: "failed" };
}
