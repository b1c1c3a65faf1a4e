// QEMU's events, read from the second QMP monitor for as long as the VMM lives: SHUTDOWN
// (its reason says whether the guest powered off, rebooted or the host stopped it),
// BLOCK_IO_ERROR with action "stop" (QEMU paused the guest: werror's default stops it on
// ENOSPC, so a guest that fills the host disk is paused, not failed), STOP and RESUME.
// QEMU 7.2 (Debian 12) sends BLOCK_IO_ERROR before its STOP, and status "io-error" while so paused.
import { oneLine } from "./ending.ts";
import { QmpClient, type QmpEvent } from "./qmp.ts";
import type { VmmEvent } from "./types.ts";

export interface QmpEventSinks {
  /** SHUTDOWN's reason, kept for when the process is gone. */
  shutdown: (reason: string) => void;
  event: (event: VmmEvent) => void;
}

export const NOSPACE_REASON = "no space left on the host disk (io-error)";

/** Follows the monitor at `path` until it closes or `signal` aborts. */
export async function followQmpEvents(path: string, signal: AbortSignal, sinks: QmpEventSinks): Promise<void> {
  if (signal.aborted) return;
  const client = await QmpClient.connect(path);
  const closed = new Promise<void>((resolve) => (client.onClose = resolve));
  signal.addEventListener("abort", () => client.close(), { once: true });
  let paused = false;
  const pause = (reason: string, nospace: boolean) => {
    if (paused) return;
    paused = true;
    sinks.event({ kind: "paused", reason, nospace });
  };
  client.onEvent = (e: QmpEvent) => {
    if (e.event === "SHUTDOWN" && typeof e.data.reason === "string") sinks.shutdown(e.data.reason);
    else if (e.event === "BLOCK_IO_ERROR" && e.data.action === "stop") pause(ioErrorReason(e.data), e.data.nospace === true);
    else if (e.event === "STOP") pause("paused by the VMM", false);
    else if (e.event === "RESUME" && paused) {
      paused = false;
      sinks.event({ kind: "resumed" });
    }
  };
  // A VM already paused before we listened (the daemon restarted meanwhile).
  const status = await client.execute<{ status?: string }>("query-status").catch(() => undefined);
  if (status?.status === "io-error") pause("io-error (an I/O error on the host disk, often no space left)", false);
  else if (status?.status === "paused") pause("paused by the VMM", false);
  await closed;
}

function ioErrorReason(data: Record<string, unknown>): string {
  if (data.nospace === true) return NOSPACE_REASON;
  return `io-error: ${typeof data.reason === "string" ? oneLine(data.reason) : "an I/O error on the host disk"}`;
}
