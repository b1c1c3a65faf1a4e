import assert from "node:assert/strict";
import { test } from "node:test";
import { BangerError, ErrorCode, exitStatusOf, failed, invalidArgument, isUsageError, resourceError } from "./errors.ts";

const sys = (code: string) => Object.assign(new Error(`${code}: something, write`), { code });

test("each resource errno is named as such, exit 1, with the path and free space", () => {
  for (const [code, says] of [
    ["ENOSPC", /^no space left on \/tmp: needs ~1\.0 MiB, .* free \(ENOSPC\)$/],
    ["EDQUOT", /^disk quota exceeded on \/tmp/],
    ["ENOMEM", /^out of memory/],
    ["EMFILE", /too many open files in the daemon/],
    ["ENFILE", /too many open files on this host/],
  ] as const) {
    const e = resourceError(sys(code), { path: "/tmp", neededBytes: 1024 * 1024 });
    assert.ok(e instanceof BangerError);
    assert.equal(e.code, ErrorCode.ResourceExhausted);
    assert.match(e.message, says);
    assert.equal(isUsageError(e), false);
  }
});

test("found through causes and in a host tool's stderr; SQLite's full disk too", () => {
  assert.ok(resourceError(new Error("wrapped", { cause: sys("ENOSPC") })));
  assert.ok(resourceError(failed("mkfs.ext4 failed: __populate_fs: No space left on device while writing file")));
  assert.match(resourceError(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }))!.message, /\(ENOSPC\)/);
});

test("never from an input's own message, nor an error already classified", () => {
  assert.equal(resourceError(invalidArgument('tar member "No space left on device" is bad')), undefined);
  assert.equal(resourceError(new BangerError(ErrorCode.InvalidArgument, "image too small", undefined, { cause: sys("ENOSPC") })), undefined);
  assert.equal(resourceError(sys("ENOENT")), undefined);
});

test("exit status: 127 for a guest command not found, 126 for one that cannot run, 2 only for usage, else 1", () => {
  assert.equal(exitStatusOf(new BangerError(ErrorCode.CommandNotFound, "x: command not found")), 127);
  assert.equal(exitStatusOf(new BangerError(ErrorCode.NotExecutable, "x: is a directory")), 126);
  assert.equal(exitStatusOf(invalidArgument("--cpus takes a whole number")), 2);
  assert.equal(exitStatusOf(new BangerError(ErrorCode.NotFound, "no such directory: /nonexist")), 1);
  assert.equal(exitStatusOf(new Error("anything else")), 1);
});
