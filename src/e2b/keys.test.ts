import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiKeys } from "./keys.ts";

describe("the E2B API key", () => {
  const withDir = (fn: (file: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), "e2b-keys-"));
    try {
      fn(join(dir, "api-key"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("is made on first use in the SDK's shape, stored 0600, and read back by the next daemon", () =>
    withDir((file) => {
      const key = new ApiKeys(file).current();
      assert.match(key, /^e2b_[0-9a-f]{40}$/);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(readFileSync(file, "utf8"), `${key}\n`);
      assert.equal(new ApiKeys(file).current(), key);
    }));

  it("checks the key exactly: a wrong, empty, shorter or longer key is refused", () =>
    withDir((file) => {
      const keys = new ApiKeys(file);
      const key = keys.current();
      assert.equal(keys.check(key), true);
      for (const wrong of [undefined, "", key.slice(0, -1), `${key}0`, `e2b_${"0".repeat(40)}`]) assert.equal(keys.check(wrong), false, String(wrong));
    }));

  it("rotation replaces it in the file and refuses the old one at once", () =>
    withDir((file) => {
      const keys = new ApiKeys(file);
      const old = keys.current();
      const fresh = keys.rotate();
      assert.notEqual(fresh, old);
      assert.equal(keys.check(old), false);
      assert.equal(keys.check(fresh), true);
      assert.equal(readFileSync(file, "utf8").trim(), fresh);
      assert.equal(statSync(file).mode & 0o777, 0o600);
    }));

  it("a file that holds no key (edited, truncated) is replaced by a new key", () =>
    withDir((file) => {
      writeFileSync(file, "not a key\n", { mode: 0o600 });
      const key = new ApiKeys(file).current();
      assert.match(key, /^e2b_[0-9a-f]{40}$/);
      assert.equal(readFileSync(file, "utf8").trim(), key);
    }));
});
