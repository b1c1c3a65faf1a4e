import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_MIN_FREE_BYTES, minFreeBytes, parseConfig, setConfigValue } from "./index.ts";

describe("config: the free-space floor", () => {
  it("defaults to 1 GiB and takes sizes as people type them", () => {
    assert.equal(DEFAULT_MIN_FREE_BYTES, 1024 ** 3);
    assert.equal(minFreeBytes({}), 1024 ** 3);
    assert.equal(minFreeBytes(setConfigValue({}, "min_free_bytes", "512M")), 512 * 1024 ** 2);
    assert.equal(minFreeBytes(setConfigValue({}, "min_free_bytes", "0")), 0);
    assert.equal(setConfigValue({ min_free_bytes: 5 }, "min_free_bytes", undefined).min_free_bytes, undefined);
  });

  it("refuses what is not a size, in the command and in the file", () => {
    assert.throws(() => setConfigValue({}, "min_free_bytes", "lots"), /min_free_bytes: cannot read size "lots"/);
    for (const bad of ['"1G"', "-1", "1.5", "true"]) {
      assert.throws(() => parseConfig(`{"min_free_bytes": ${bad}}`, "config.json"), /config.json: "min_free_bytes" must be a whole number of bytes/);
    }
  });
});
