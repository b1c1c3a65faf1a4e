// The one wait-and-retry loop: a VMM socket, a daemon's socket, a guest's sshd, a process
// going away all wait the same way, differing only in pauses and in what a timeout says.
import { setTimeout as sleep } from "node:timers/promises";
import { cancelled } from "./errors.ts";

export interface RetryOptions {
  /** Attempts stop at this many ms after the first; the last one runs at the deadline. */
  timeoutMs: number;
  /** The first pause between attempts. */
  delayMs: number;
  /** Pauses double up to this; unset: every pause is `delayMs`. */
  maxDelayMs?: number;
  /** Aborting ends the wait with a `cancelled` error. */
  signal?: AbortSignal;
  /** The error thrown when the deadline passes without a result. */
  onTimeout: () => Error;
}

/**
 * Calls `attempt` until it returns something other than `undefined` ("not yet"), then returns
 * that. An error thrown by `attempt` ends the wait at once: an attempt that should be retried
 * catches its error and returns `undefined`.
 */
export async function retry<T>(attempt: () => Promise<T | undefined> | T | undefined, opts: RetryOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = opts.delayMs;
  for (;;) {
    if (opts.signal?.aborted) throw cancelled();
    const result = await attempt();
    if (result !== undefined) return result;
    const left = deadline - Date.now();
    if (left <= 0) throw opts.onTimeout();
    // An abort only cuts the pause short; the check above reports it.
    await sleep(Math.min(delay, left), undefined, { signal: opts.signal }).catch(() => undefined);
    delay = Math.min(delay * 2, opts.maxDelayMs ?? opts.delayMs);
  }
}
