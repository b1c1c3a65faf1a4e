import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_MIN_FREE_BYTES,
  DEFAULT_WEB_PORT,
  checkWebPort,
  effectiveValue,
  minFreeBytes,
  parseConfig,
  poolMaxMemory,
  setConfigValue,
  snapshotStandbys,
  tapPoolSize,
  tcgCacheMib,
} from "./index.ts";

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

describe("config: the warm pools' memory cap", () => {
  it("defaults to 2 GiB, takes sizes, and `config unset` brings the default back", () => {
    assert.equal(poolMaxMemory({}), 2 * 1024 ** 3);
    const set = setConfigValue({}, "pool.max_memory", "4G");
    assert.deepEqual(set.pool, { max_memory: 4 * 1024 ** 3 });
    assert.equal(poolMaxMemory(set), 4 * 1024 ** 3);
    assert.equal(poolMaxMemory(setConfigValue(set, "pool.max_memory", undefined)), 2 * 1024 ** 3);
  });

  it("refuses what is not a size, in the command and in the file", () => {
    assert.throws(() => setConfigValue({}, "pool.max_memory", "plenty"), /pool\.max_memory: cannot read size "plenty"/);
    for (const bad of ['"1G"', "-1", "1.5"]) {
      assert.throws(() => parseConfig(`{"pool": {"max_memory": ${bad}}}`, "config.json"), /config.json: "pool.max_memory" must be a whole number of bytes/);
    }
    assert.throws(() => parseConfig(`{"pool": 3}`, "config.json"), /config.json: "pool" must be an object/);
  });
});

describe("config: QEMU's translation cache", () => {
  it("defaults to 64 MiB, takes whole MiB from 1M to 2G, and `config unset` brings the default back", () => {
    assert.equal(tcgCacheMib({}), 64);
    const set = setConfigValue({}, "qemu.tcg_cache", "256M");
    assert.deepEqual(set.qemu, { tcg_cache: 256 * 1024 ** 2 });
    assert.equal(tcgCacheMib(set), 256);
    assert.equal(tcgCacheMib(setConfigValue(set, "qemu.tcg_cache", "2G")), 2048);
    assert.equal(tcgCacheMib(setConfigValue(set, "qemu.tcg_cache", undefined)), 64);
  });

  it("refuses what QEMU cannot take, in the command and in the file", () => {
    for (const bad of ["512K", "1.5M", "3G", "0"]) assert.throws(() => setConfigValue({}, "qemu.tcg_cache", bad), /qemu\.tcg_cache takes a whole number of MiB from 1M to 2G/);
    assert.throws(() => setConfigValue({}, "qemu.tcg_cache", "big"), /qemu\.tcg_cache: cannot read size "big"/);
    for (const bad of ['"64M"', "-1", "1.5", "1000"]) {
      assert.throws(() => parseConfig(`{"qemu": {"tcg_cache": ${bad}}}`, "config.json"), /config.json: "qemu.tcg_cache" takes a whole number of MiB/);
    }
    assert.throws(() => parseConfig(`{"qemu": 3}`, "config.json"), /config.json: "qemu" must be an object/);
  });
});

describe("config: standby restores", () => {
  it("defaults to 2, takes 0 to 8, in the command and in the file", () => {
    assert.equal(snapshotStandbys({}), 2);
    const off = setConfigValue({}, "snapshot.standbys", "0");
    assert.deepEqual(off.snapshot, { standbys: 0 });
    assert.equal(snapshotStandbys(off), 0);
    assert.equal(snapshotStandbys(setConfigValue(off, "snapshot.standbys", undefined)), 2);
    for (const bad of ["-1", "9", "1.5", "two", ""]) assert.throws(() => setConfigValue({}, "snapshot.standbys", bad), /snapshot\.standbys takes a whole number from 0 to 8/);
    assert.throws(() => parseConfig(`{"snapshot": {"standbys": "2"}}`, "config.json"), /config.json: "snapshot.standbys" takes a whole number from 0 to 8/);
    assert.throws(() => parseConfig(`{"snapshot": 2}`, "config.json"), /config.json: "snapshot" must be an object/);
  });
});

describe("config: the value in effect", () => {
  it("takes the daemon's environment over the file over the default", () => {
    assert.deepEqual(effectiveValue({}, "web.port", {}), { key: "web.port", value: DEFAULT_WEB_PORT, source: "default" });
    assert.deepEqual(effectiveValue({ web: { port: 8123 } }, "web.port", {}), { key: "web.port", value: 8123, source: "config" });
    assert.deepEqual(effectiveValue({ web: { port: 8123 } }, "web.port", { BANGER_WEB_PORT: "0" }), { key: "web.port", value: 0, source: "env", env: "BANGER_WEB_PORT" });
    assert.deepEqual(effectiveValue({}, "network.enabled", { BANGER_HOME: "/tmp/x" }), { key: "network.enabled", value: false, source: "default" });
    assert.deepEqual(effectiveValue({}, "network.enabled", { BANGER_NETWORK: "on" }), { key: "network.enabled", value: true, source: "env", env: "BANGER_NETWORK" });
    // BANGER_WEB only turns the dashboard on (bangerd --web); anything else leaves the file's word.
    assert.equal(effectiveValue({ web: { enabled: false } }, "web.enabled", { BANGER_WEB: "0" }).source, "config");
  });

  it("refuses an unknown key", () => {
    assert.throws(() => effectiveValue({}, "colour", {}), /unknown config key "colour"/);
  });
});

describe("config: tap_pool and web.port, checked in one place", () => {
  it("the tap pool: BANGER_TAP_POOL over the file over 2, 0 to 64, the same rule as config set", () => {
    assert.equal(tapPoolSize({}, {}), 2);
    assert.equal(tapPoolSize({ network: { tap_pool: 5 } }, {}), 5);
    assert.equal(tapPoolSize({ network: { tap_pool: 5 } }, { BANGER_TAP_POOL: "0" }), 0);
    assert.throws(() => tapPoolSize({ network: { tap_pool: 65 } }, {}), /network\.tap_pool takes a whole number from 0 to 64/);
    assert.throws(() => tapPoolSize({}, { BANGER_TAP_POOL: "many" }), /BANGER_TAP_POOL takes a whole number from 0 to 64/);
    assert.throws(() => setConfigValue({}, "network.tap_pool", "65"), /network\.tap_pool takes a whole number from 0 to 64/);
  });

  it("web.port: config set wants 1-65535; where the dashboard starts, 0 (any free port) is fine", () => {
    assert.equal(setConfigValue({}, "web.port", "8080").web?.port, 8080);
    assert.throws(() => setConfigValue({}, "web.port", "0"), /web\.port takes a port number from 1 to 65535/);
    assert.equal(checkWebPort(0, { ephemeralOk: true }), 0);
    for (const bad of [65536, -1, 1.5, Number.NaN, "8080"]) assert.throws(() => checkWebPort(bad, { ephemeralOk: true }), /web\.port takes a port number from 0 to 65535/, String(bad));
  });
});
