// Reading a guest file through the SDK, against a stand-in daemon client (the real path is
// test/e2e/sdk.test.ts): a call that fails before tar-stream has loaded (the first file call
// of a process loads it) is that call's error, not an uncaught exception.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Client } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { readGuestFile } from "./files.ts";

test("a read that fails at once (no such file) rejects with the daemon's error", async () => {
  const client = {
    start: () => ({ result: Promise.reject(new BangerError(ErrorCode.NotFound, "guest agent: files.get: lstat /no/such/file: no such file or directory")), cancel: () => undefined }),
  } as unknown as Client;
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on("uncaughtException", onUncaught);
  try {
    await assert.rejects(readGuestFile(client, "vm", "/no/such/file"), (err: BangerError) => err.code === ErrorCode.NotFound && /no such file/.test(err.message));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(uncaught, []);
  } finally {
    process.off("uncaughtException", onUncaught);
  }
});
