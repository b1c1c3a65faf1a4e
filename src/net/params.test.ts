// Pure pieces: subnet choice, address allocation, guest parameters, MACs, the nft script's
// input validation, `dns setup` decisions, and the SSH include file and key.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../util/exec.ts";
import {
  allocateAddress,
  chooseSubnet,
  ensureSshKey,
  forgetKnownHost,
  gatewayOf,
  guestKernelParams,
  macForVm,
  parseEgressPolicy,
  parseSubnet,
  planDnsSetup,
  renderRuleset,
  writeSshConfig,
} from "./index.ts";

test("parseSubnet takes network/prefix and rejects host bits, odd prefixes and junk", () => {
  assert.deepEqual(parseSubnet("172.30.0.0/24"), { network: "172.30.0.0", prefix: 24 });
  assert.throws(() => parseSubnet("172.30.0.5/24"), /host bits set/);
  for (const bad of ["172.30.0.0", "172.30.0.0/8", "172.30.0.0/31", "300.1.1.0/24", "a.b.c.d/24", "1.2.3.0/24/1"]) {
    assert.throws(() => parseSubnet(bad), /invalid subnet|not an IPv4|host bits/, bad);
  }
});

test("chooseSubnet avoids existing routes and keeps the bridge's own subnet", () => {
  const routes = [
    { dst: "default", dev: "eth0" },
    { dst: "172.30.0.0/24", dev: "docker0" },
    { dst: "172.30.1.0/24", dev: "wg0" },
    { dst: "10.0.0.0/8", dev: "eth0" },
  ];
  assert.deepEqual(chooseSubnet(routes, { bridge: "banger0" }), { network: "172.30.2.0", prefix: 24 });
  // A /16 route covering the whole start region pushes the choice past it.
  assert.deepEqual(chooseSubnet([{ dst: "172.30.0.0/15", dev: "x" }], { bridge: "banger0" }), { network: "172.16.0.0", prefix: 24 });
  // Our bridge already routes a subnet: choosing again returns it.
  assert.deepEqual(chooseSubnet([...routes, { dst: "172.20.5.0/24", dev: "banger0" }], { bridge: "banger0" }), { network: "172.20.5.0", prefix: 24 });
  assert.throws(() => chooseSubnet([{ dst: "172.16.0.0/12", dev: "vpn0" }], { bridge: "banger0" }), /no free subnet/);
});

test("allocateAddress hands out .2 upward, skips used ones, and says when the subnet is full", () => {
  const s = parseSubnet("172.30.0.0/29"); // .1 gateway, .2-.6 guests, .7 broadcast
  assert.equal(gatewayOf(s), "172.30.0.1");
  assert.equal(allocateAddress(s, []), "172.30.0.2");
  assert.equal(allocateAddress(s, ["172.30.0.2", "172.30.0.4"]), "172.30.0.3");
  assert.throws(() => allocateAddress(s, ["172.30.0.2", "172.30.0.3", "172.30.0.4", "172.30.0.5", "172.30.0.6"]), /no free guest address/);
});

test("guest kernel parameters use the agent's names; MACs are stable and locally administered", () => {
  const s = parseSubnet("172.30.0.0/24");
  assert.deepEqual(guestKernelParams("172.30.0.9", s), ["banger.ip=172.30.0.9/24", "banger.gw=172.30.0.1", "banger.dns=172.30.0.1"]);
  assert.throws(() => guestKernelParams("172.30.1.9", s), /not in/);
  assert.throws(() => guestKernelParams("172.30.0.1", s), /not in/);
  const mac = macForVm("vm-123");
  assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  assert.equal(mac, macForVm("vm-123"));
  assert.notEqual(mac, macForVm("vm-124"));
  const first = Number.parseInt(mac.slice(0, 2), 16);
  assert.equal(first & 0b11, 0b10, "locally administered, unicast");
});

test("the nft script refuses names and addresses that do not belong", () => {
  const base = { bridge: "banger0", subnet: parseSubnet("172.30.0.0/24") };
  const vm = { ip: "172.30.0.2", port: "bgrtap0", egress: "full" as const };
  assert.match(renderRuleset({ ...base, vms: [vm] }, "eth0"), /oifname "eth0" masquerade/);
  assert.match(renderRuleset({ ...base, vms: [] }, undefined), /oifname != "banger0" masquerade/);
  assert.throws(() => renderRuleset({ ...base, vms: [{ ...vm, port: 'x" ; flush ruleset' }] }, "eth0"), /invalid VM port/);
  assert.throws(() => renderRuleset({ ...base, vms: [{ ...vm, ip: "10.0.0.2" }] }, "eth0"), /not a guest address/);
  assert.throws(() => renderRuleset({ ...base, vms: [{ ...vm, ip: "172.30.0.1" }] }, "eth0"), /not a guest address/);
  assert.throws(() => renderRuleset({ ...base, bridge: "a-very-long-bridge-name", vms: [] }, "eth0"), /invalid bridge name/);
  assert.equal(parseEgressPolicy("public"), "public");
  assert.throws(() => parseEgressPolicy("open"), /unknown network policy "open"/);
});

test("dns setup: resolvectl commands with systemd-resolved, instructions without", () => {
  const plan = planDnsSetup({ bridge: "banger0", gateway: "172.30.0.1", resolved: true });
  assert.equal(plan.kind, "resolved");
  assert.deepEqual(plan.kind === "resolved" && plan.commands, [
    ["resolvectl", "dns", "banger0", "172.30.0.1"],
    ["resolvectl", "domain", "banger0", "~vm"],
    ["resolvectl", "default-route", "banger0", "false"],
  ]);
  const manual = planDnsSetup({ bridge: "banger0", gateway: "172.30.0.1", resolved: false });
  assert.equal(manual.kind, "manual");
  assert.match(manual.text, /server=\/vm\/172\.30\.0\.1/);
  assert.match(manual.text, /dig @172\.30\.0\.1 <vm-name>\.vm/);
  assert.throws(() => planDnsSetup({ bridge: "banger0", gateway: "nope", resolved: true }), /not an IPv4/);
});

test("ssh: include file with a Host *.vm block, a managed key, and forgetting a host key", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "bgr-ssh-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = await ensureSshKey(join(dir, "keys", "id_ed25519"));
  assert.equal(key.created, true);
  assert.equal(key.managed, true);
  assert.match(key.publicKey, /^ssh-ed25519 \S+ banger$/);
  assert.equal(statSync(key.privateKeyPath).mode & 0o077, 0, "private key is not readable by others");
  const again = await ensureSshKey(join(dir, "keys", "id_ed25519"));
  assert.equal(again.created, false);
  assert.equal(again.publicKey, key.publicKey);
  // The user's own key wins when there is one.
  const user = await ensureSshKey(join(dir, "other", "id_ed25519"), { userSshDir: join(dir, "keys") });
  assert.equal(user.managed, false);
  assert.equal(existsSync(join(dir, "other")), false);

  const includePath = join(dir, "ssh", "banger.conf");
  const knownHostsPath = join(dir, "known_hosts");
  const line = await writeSshConfig({ includePath, keyPath: key.privateKeyPath, knownHostsPath, proxyCommand: "banger vm ssh-proxy %h" });
  assert.equal(line, `Include "${includePath}"`);
  const text = readFileSync(includePath, "utf8");
  assert.match(text, /^Host \*\.vm$/m);
  assert.match(text, /^ {2}User root$/m);
  assert.match(text, new RegExp(`^  IdentityFile "${key.privateKeyPath}"$`, "m"));
  assert.match(text, new RegExp(`^  UserKnownHostsFile "${knownHostsPath}"$`, "m"));
  assert.match(text, /^ {2}StrictHostKeyChecking accept-new$/m);
  assert.match(text, /^ {2}ProxyCommand banger vm ssh-proxy %h$/m);
  // OpenSSH itself reads it: `ssh -G` resolves the options for a .vm host.
  const g = await run(["ssh", "-F", includePath, "-G", "brisk-otter.vm"]);
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /^user root$/m);
  assert.match(g.stdout, /^proxycommand banger vm ssh-proxy %h$/m);
  await assert.rejects(writeSshConfig({ includePath, keyPath: "relative/key", knownHostsPath }), /absolute path/);
  await assert.rejects(writeSshConfig({ includePath, keyPath: key.privateKeyPath, knownHostsPath, user: "root\nHost *" }), /cannot be used/);

  writeFileSync(knownHostsPath, `brisk-otter.vm ${key.publicKey}\nother.vm ${key.publicKey}\n`);
  await forgetKnownHost(knownHostsPath, "brisk-otter");
  const left = readFileSync(knownHostsPath, "utf8");
  assert.doesNotMatch(left, /brisk-otter/);
  assert.match(left, /other\.vm/);
});
