// The network manager's pure parts: the on/off switch and settings, public key checks.
// The manager itself runs for real in test/e2e/network.test.ts (inside namespaces).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { networkSettings } from "./network.ts";
import { validatePublicKey } from "./ssh-keys.ts";

describe("networkSettings", () => {
  it("is on by default, with banger0, a pool of 2 and no fixed subnet", () => {
    assert.deepEqual(networkSettings({}, {}), { enabled: true, bridge: "banger0", tapPool: 2, tapPrefix: "bgrtap" });
  });

  it("BANGER_NETWORK wins over config; config can turn it off", () => {
    assert.equal(networkSettings({}, { BANGER_NETWORK: "off" }).enabled, false);
    assert.equal(networkSettings({ network: { enabled: false } } as never, {}).enabled, false);
    assert.equal(networkSettings({ network: { enabled: false } } as never, { BANGER_NETWORK: "on" }).enabled, true);
    assert.equal(networkSettings({ network: { enabled: true } } as never, { BANGER_NETWORK: "0" }).enabled, false);
  });

  it("reads bridge, subnet and pool size, and refuses bad ones", () => {
    const s = networkSettings({ network: { bridge: "br-vm", subnet: "172.31.5.0/24", tap_pool: 4 } } as never, {});
    assert.deepEqual(s, { enabled: true, bridge: "br-vm", subnet: { network: "172.31.5.0", prefix: 24 }, tapPool: 4, tapPrefix: "bgrtap" });
    assert.equal(networkSettings({}, { BANGER_TAP_POOL: "0" }).tapPool, 0);
    const bad: [object, NodeJS.ProcessEnv][] = [
      [{}, { BANGER_NETWORK: "maybe" }],
      [{}, { BANGER_TAP_POOL: "-1" }],
      [{ network: { tap_pool: 1000 } }, {}],
      [{ network: { bridge: "has space" } }, {}],
      [{ network: { subnet: "172.31.5.1/24" } }, {}],
      [{ network: { enabled: "yes" } }, {}],
      [{ network: "on" }, {}],
      [{ dns: { upstream: ["dns.google"] } }, {}],
      [{ dns: { upstream: 53 } }, {}],
      [{ dns: "1.1.1.1" }, {}],
      [{}, { BANGER_DNS_UPSTREAM: "1.1.1.1:99999" }],
    ];
    for (const [config, env] of bad) {
      assert.throws(
        () => networkSettings(config as never, env),
        (err: BangerError) => err.code === ErrorCode.InvalidArgument,
        JSON.stringify([config, env]),
      );
    }
  });
});

describe("networkSettings: the guests' DNS upstreams", () => {
  it("are unset by default (the host's resolv.conf), chosen by config, and the environment wins", () => {
    assert.equal(networkSettings({}, {}).dnsUpstream, undefined);
    assert.deepEqual(networkSettings({ dns: { upstream: ["192.0.2.53", "[2001:db8::53]:5353"] } }, {}).dnsUpstream, [
      { host: "192.0.2.53", port: 53 },
      { host: "2001:db8::53", port: 5353 },
    ]);
    assert.deepEqual(networkSettings({ dns: { upstream: ["192.0.2.53"] } }, { BANGER_DNS_UPSTREAM: "127.0.0.1:5353, 198.51.100.53" }).dnsUpstream, [
      { host: "127.0.0.1", port: 5353 },
      { host: "198.51.100.53", port: 53 },
    ]);
    assert.deepEqual(networkSettings({ dns: { upstream: [] } }, {}).dnsUpstream, [], "an empty list: nothing forwarded");
  });
});

describe("validatePublicKey", () => {
  const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl banger";
  it("accepts one OpenSSH public key line", () => {
    assert.equal(validatePublicKey(`${key}\n`), key);
    assert.equal(validatePublicKey("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI"), "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI");
  });
  it("refuses options, several lines and anything else", () => {
    for (const bad of [`command="sh" ${key}`, `${key}\n${key}`, "ssh-ed25519", "hello world", `${key}; rm -rf /\nx`, ""]) {
      assert.throws(() => validatePublicKey(bad), /not an OpenSSH public key line/, bad);
    }
  });
});
