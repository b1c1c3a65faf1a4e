// The shared wait loop: it returns the first result, doubles its pauses up to the cap, stops
// at the deadline with the caller's error, and ends at once on a thrown error or an abort.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BangerError, ErrorCode } from "./errors.ts";
import { retry } from "./retry.ts";

describe("retry", () => {
  test("returns the first defined result, pausing with doubling delays up to the cap", async () => {
    const times: number[] = [];
    const got = await retry(
      () => {
        times.push(Date.now());
        return times.length === 5 ? "ready" : undefined;
      },
      { timeoutMs: 5_000, delayMs: 20, maxDelayMs: 50, onTimeout: () => new Error("timeout") },
    );
    assert.equal(got, "ready");
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    // Pauses of 20, 40, 50, 50 ms (timers fire no earlier than asked; allow 2 ms of clock skew).
    for (const [i, min] of [20, 40, 50, 50].entries()) assert.ok((gaps[i] as number) >= min - 2, `gap ${i}: ${gaps[i]} ms`);
    assert.ok((gaps[3] as number) < 50 + 40, `the cap holds: ${gaps[3]} ms`);
  });

  test("a result of false or 0 counts; only undefined means not yet", async () => {
    assert.equal(await retry(() => 0, { timeoutMs: 100, delayMs: 10, onTimeout: () => new Error("timeout") }), 0);
    assert.equal(await retry(async () => false, { timeoutMs: 100, delayMs: 10, onTimeout: () => new Error("timeout") }), false);
  });

  test("throws the caller's error once the deadline passes, after an attempt at the deadline", async () => {
    let attempts = 0;
    const start = Date.now();
    await assert.rejects(
      retry(
        () => {
          attempts++;
          return undefined;
        },
        { timeoutMs: 120, delayMs: 50, onTimeout: () => new BangerError(ErrorCode.Timeout, "gave up") },
      ),
      (err: BangerError) => err.code === ErrorCode.Timeout && err.message === "gave up",
    );
    const took = Date.now() - start;
    assert.ok(took >= 118 && took < 1_000, `took ${took} ms`);
    assert.ok(attempts >= 3 && attempts <= 4, `${attempts} attempts`); // at 0, 50, 100 and 120 ms
  });

  test("an error thrown by the attempt ends the wait at once", async () => {
    let attempts = 0;
    await assert.rejects(
      retry(
        () => {
          attempts++;
          throw new Error("wrong peer");
        },
        { timeoutMs: 5_000, delayMs: 10, onTimeout: () => new Error("timeout") },
      ),
      /wrong peer/,
    );
    assert.equal(attempts, 1);
  });

  test("an abort cuts a pause short and ends with cancelled", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    const start = Date.now();
    await assert.rejects(
      retry(() => undefined, { timeoutMs: 10_000, delayMs: 5_000, signal: ac.signal, onTimeout: () => new Error("timeout") }),
      (err: BangerError) => err.code === ErrorCode.Cancelled,
    );
    assert.ok(Date.now() - start < 2_000);
  });
});
