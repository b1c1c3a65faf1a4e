// Why a VMM ended, in one line: from what is known about it (its exit status when this
// daemon started it, QEMU's SHUTDOWN reason, a kernel panic line on the guest's console,
// the last line of vmm.log) to a state, `stopped` (the guest or someone asked for it) or
// `crashed` (it died: a signal, a failed exit, a guest panic), and the reason shown to users.
import { readConsoleTail } from "./console.ts";
import { logTail, type ExitStatus } from "./process.ts";
import type { VmmEvent } from "./types.ts";

/** The longest guest line kept in a reason (the rest is the guest's and stays in `vm logs`). */
const MAX_GUEST_LINE = 160;
/** How much of the console's end is searched for a panic. */
const PANIC_SEARCH_BYTES = 16 * 1024;

export interface EndFacts {
  pid: number;
  /** Known only for a VMM this daemon spawned. */
  status?: ExitStatus;
  /** QEMU's SHUTDOWN event reason (guest-shutdown, guest-reset, host-signal, ...). */
  shutdown?: string;
  /** The guest kernel's panic line from the console, if it panicked. */
  panicLine?: string;
  /** vmm.log's last line (why QEMU or Firecracker gave up). */
  logLine?: string;
}

const SHUTDOWN_REASONS: Record<string, { state: "stopped" | "crashed"; reason: string }> = {
  "guest-shutdown": { state: "stopped", reason: "the guest powered off" },
  "guest-reset": { state: "stopped", reason: "the guest rebooted (a VM ends on reboot)" },
  "guest-panic": { state: "crashed", reason: "the guest panicked" },
  "host-signal": { state: "stopped", reason: "the VMM was stopped by a signal on the host" },
  "host-qmp-quit": { state: "stopped", reason: "the VMM was told to quit" },
};

export function describeEnd(f: EndFacts): Extract<VmmEvent, { kind: "ended" }> {
  const ended = (state: "stopped" | "crashed", reason: string) => ({ kind: "ended" as const, state, reason });
  // A panicking guest reboots (panic=-1) and -no-reboot ends QEMU: the console says why.
  if (f.panicLine) return ended("crashed", `guest kernel panic: ${f.panicLine}`);
  if (f.status?.signal) return ended("crashed", `the VMM was killed by ${f.status.signal}`);
  if (f.status && f.status.code !== 0 && f.status.code !== null) {
    return ended("crashed", `the VMM exited with status ${f.status.code}${f.logLine ? `: ${f.logLine}` : ""}`);
  }
  const known = f.shutdown ? SHUTDOWN_REASONS[f.shutdown] : undefined;
  if (known) return ended(known.state, known.reason);
  if (f.shutdown) return ended("stopped", `the VMM shut down (${f.shutdown})`);
  if (f.status) return ended("stopped", "the VMM exited");
  // Not our child and no SHUTDOWN seen: an orderly exit would have said so.
  return ended("crashed", `the VMM (pid ${f.pid}) ended without shutting down (killed?)`);
}

/** The last kernel panic line in the console's end, made one bounded line of text. */
export async function findPanicLine(consolePath: string): Promise<string | undefined> {
  const { data } = await readConsoleTail(consolePath, PANIC_SEARCH_BYTES).catch(() => ({ data: Buffer.alloc(0) }));
  const lines = data.toString("utf8").split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const at = lines[i]!.indexOf("Kernel panic - not syncing");
    if (at >= 0) return oneLine(lines[i]!.slice(at));
  }
  return undefined;
}

/** Guest or VMM text kept in the store: printable, one line, bounded (printing adds the terminal rule). */
export function oneLine(text: string): string {
  const flat = text
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  return flat.length > MAX_GUEST_LINE ? `${flat.slice(0, MAX_GUEST_LINE - 1)}…` : flat;
}

/** vmm.log's last line, bounded, without logTail's ": " prefix. */
export async function lastLogLine(path: string): Promise<string | undefined> {
  const line = (await logTail(path)).replace(/^: /, "");
  return line ? oneLine(line) : undefined;
}
