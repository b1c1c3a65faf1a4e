// Fork children on the bridge are different machines: each gets its own MAC and address in
// the guest, the parent keeps its own, `.vm` names resolve to each, and two peers reach each
// other. The daemon runs inside a network namespace this file creates and removes (as
// network.test.ts does); nothing touches the host's network.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NetnsLab, canUseNetns } from "../kits/netns.ts";
import { REPO, type CliResult, makeTempHome, prepareBootableHome, stopDaemon } from "../helpers.ts";

const skip = !(await canUseNetns()) && "needs root and iproute2 to create network namespaces";

describe("fork children on the bridge (real VMs, daemon inside a network namespace)", { skip }, () => {
  const lab = new NetnsLab();
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let ns = "";

  function banger(args: string[]): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", ns, join(REPO, "bin/banger"), ...args], {
        env: { ...process.env, ...env, BANGER_NETWORK: "on", BANGER_HOME: home, HOME: join(home, "user"), BANGER_DNS_UPSTREAM: "127.0.0.53" },
        timeout: 300_000,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b) => (stdout += b));
      child.stderr.on("data", (b) => (stderr += b));
      child.stdin.end();
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    });
  }
  async function ok(args: string[]): Promise<string> {
    const r = await banger(args);
    assert.equal(r.code, 0, `banger ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }
  const guest = (vm: string, script: string) => ok(["vm", "exec", vm, "--user", "root", "--", "sh", "-c", script]);

  before(async () => {
    mkdirSync(join(home, "user"), { recursive: true });
    ({ env } = await prepareBootableHome(home));
    await stopDaemon(home); // the next daemon starts inside the namespace
    ns = await lab.add("host");
    await ok(["vm", "create", "--name", "par", "--image", "busybox", "--memory", "256M", "--net-peer"]);
  });
  after(async () => {
    if (ns) {
      for (const vm of ["par", "par-1", "par-2"]) await banger(["vm", "rm", "-f", vm]).catch(() => undefined);
      await banger(["daemon", "stop", "--cleanup-network"]).catch(() => undefined);
    }
    await stopDaemon(home);
    await lab.cleanup();
    cleanup();
  });

  it("gives two children their own MAC and address, resolvable as .vm names, reaching each other", async () => {
    const forked = JSON.parse(await ok(["vm", "fork", "par", "--count", "2", "--json"])) as { children: { name: string; ip: string }[] };
    const ips = Object.fromEntries(forked.children.map((c) => [c.name, c.ip]));
    ips.par = JSON.parse(await ok(["vm", "show", "par", "--json"])).ip;
    assert.equal(new Set(Object.values(ips)).size, 3, `three addresses: ${JSON.stringify(ips)}`);
    const macs = new Set<string>();
    for (const vm of ["par", "par-1", "par-2"]) {
      const addr = await guest(vm, "ip -4 -o addr show eth0");
      assert.match(addr, new RegExp(`inet ${ips[vm]!.replace(/\./g, "\\.")}/`), `${vm} has its own address in the guest`);
      macs.add((await guest(vm, "cat /sys/class/net/eth0/address")).trim());
    }
    assert.equal(macs.size, 3, "three MACs");
    const resolved = await guest("par-1", "nslookup par-2.vm");
    assert.match(resolved, new RegExp(ips["par-2"]!.replace(/\./g, "\\.")));
    await guest("par-1", `ping -c 1 -W 5 ${ips["par-2"]}`);
    await guest("par-2", `ping -c 1 -W 5 ${ips.par}`);
  });
});
