// How the CLI shows things: aligned tables, --json, one-line errors, and progress on stderr.
// Table cells, field values, JSON and progress messages can come from a guest, an image or
// a catalog: all of it goes through util/text.ts's inert() before reaching the terminal.
import { humanBytes } from "../util/fsx.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { inert, inertJson } from "../util/text.ts";

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

/**
 * Renders progress events on stderr: a redrawn bar on a terminal, one line per phase
 * change otherwise (so logs stay readable). Each finished phase prints its duration.
 */
export class ProgressView {
  private phase: string | undefined;
  private phaseStarted = 0;
  private lastDraw = 0;
  private readonly tty = process.stderr.isTTY === true;

  update(p: ProgressEvent): void {
    if (p.phase !== this.phase) {
      this.endPhase();
      this.phase = p.phase;
      this.phaseStarted = Date.now();
      if (!this.tty) process.stderr.write(`${inert(p.phase)}${p.message ? `: ${inert(p.message)}` : ""}...\n`);
    }
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.lastDraw < 80 && p.done !== p.total) return;
    this.lastDraw = now;
    process.stderr.write(`\r\x1b[2K${this.describe(p)}`);
  }

  private describe(p: ProgressEvent): string {
    const msg = p.message ? ` ${inert(p.message)}` : "";
    if (p.total && p.total > 0 && p.done !== undefined) {
      const frac = Math.min(1, p.done / p.total);
      const width = 30;
      const filled = Math.round(frac * width);
      return `${inert(p.phase)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ${humanBytes(p.done)}/${humanBytes(p.total)}${msg}`;
    }
    if (p.done !== undefined) return `${inert(p.phase)} ${humanBytes(p.done)}${msg}`;
    return `${inert(p.phase)}${msg}`;
  }

  private endPhase(): void {
    if (this.phase === undefined) return;
    const secs = ((Date.now() - this.phaseStarted) / 1000).toFixed(1);
    if (this.tty) process.stderr.write(`\r\x1b[2K${this.phase} done (${secs}s)\n`);
    else process.stderr.write(`${this.phase} done (${secs}s)\n`);
    this.phase = undefined;
  }

  finish(): void {
    this.endPhase();
  }
}
