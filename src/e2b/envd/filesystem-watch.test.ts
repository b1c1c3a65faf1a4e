// The E2B watchers' bound under concurrency, against a stand-in daemon whose vm.fs.watch
// starts after a delay: calls arriving together must not all pass the check before any is
// counted.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Handlers } from "../../api/index.ts";
import type { CallContext } from "../../rpc/index.ts";
import { cancelled } from "../../util/errors.ts";
import type { EnvdDeps } from "./context.ts";
import { watchService } from "./filesystem-watch.ts";

describe("createWatcher (stand-in daemon)", () => {
  it("starts at most 256 watchers, however many calls arrive at once", async () => {
    const methods = {
      // Started 20 ms later, then running until stopped.
      "vm.fs.watch": (_p: unknown, call: CallContext) =>
        new Promise((_resolve, reject) => {
          setTimeout(() => void call.emit({ t: "started" }), 20);
          call.signal.addEventListener("abort", () => reject(cancelled()), { once: true });
        }),
    } as unknown as Partial<Handlers>;
    const deps: EnvdDeps = { methods, sandboxFor: async () => ({ id: "isandbox", vm: "isandbox", envVars: {} }) };
    const service = watchService(deps);
    const ctx = { requestHeader: new Headers(), signal: new AbortController().signal } as Parameters<typeof service.createWatcher>[1];
    const results = await Promise.allSettled(Array.from({ length: 300 }, () => service.createWatcher({ path: "/tmp", recursive: false } as Parameters<typeof service.createWatcher>[0], ctx)));
    const made = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<{ watcherId: string }>[];
    const refused = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.equal(made.length, 256);
    assert.equal(refused.length, 44);
    assert.ok(refused.every((r) => r.reason instanceof ConnectError && r.reason.code === Code.ResourceExhausted));
    for (const m of made) await service.removeWatcher({ watcherId: m.value.watcherId } as Parameters<typeof service.removeWatcher>[0], ctx);
    const again = await service.createWatcher({ path: "/tmp", recursive: false } as Parameters<typeof service.createWatcher>[0], ctx);
    assert.ok(again.watcherId, "removed ones free their places");
    await service.removeWatcher({ watcherId: again.watcherId } as Parameters<typeof service.removeWatcher>[0], ctx);
  });
});
