// What Ctrl-C, SIGTERM and SIGHUP do to a CLI that runs a command in a VM: each is passed on
// to the remote command (it may trap it and clean up), and a second one within
// FORCE_WINDOW_MS gives up on the command at once, as a shell user expects of a stuck
// program. Pure policy (InterruptPolicy) plus the process wiring (onInterrupts).
import { constants } from "node:os";

/** The signals a terminal user (or a supervisor, or a closed terminal) sends to stop banger. */
export const INTERRUPT_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
export type InterruptSignal = (typeof INTERRUPT_SIGNALS)[number];

/** A second interrupt this soon after the previous one force-stops. */
export const FORCE_WINDOW_MS = 1000;

/** The exit status of a process ended by `sig` (128+N, as a shell reports it). */
export function signalStatus(sig: NodeJS.Signals): number {
  return 128 + ((constants.signals as Record<string, number>)[sig] ?? 0);
}

/** Decides, interrupt by interrupt, between passing it on and force-stopping. */
export class InterruptPolicy {
  private last = -Infinity;
  /** Every interrupt seen, in order. */
  readonly seen: InterruptSignal[] = [];

  next(sig: InterruptSignal, now: number): "forward" | "force" {
    this.seen.push(sig);
    const force = now - this.last <= FORCE_WINDOW_MS;
    this.last = now;
    return force ? "force" : "forward";
  }
}

/**
 * Routes SIGINT, SIGTERM and SIGHUP to `handler` (instead of Node's default of dying at once)
 * until the returned function is called.
 */
export function onInterrupts(handler: (sig: InterruptSignal) => void): () => void {
  const listeners = INTERRUPT_SIGNALS.map((sig) => [sig, () => handler(sig)] as const);
  for (const [sig, fn] of listeners) process.on(sig, fn);
  return () => {
    for (const [sig, fn] of listeners) process.off(sig, fn);
  };
}
