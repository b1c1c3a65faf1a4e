// Host-side networking for real, inside network namespaces this file creates and deletes:
// bridge + taps + nftables set up and torn down, the tap pool's speed, and packets from
// stand-in guests (namespaces on veth pairs) through NAT, egress policy, isolation and DNS.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import {
  TapPool,
  allocateAddress,
  bridgeMac,
  chooseSubnet,
  createTap,
  deleteTap,
  gatewayOf,
  listLinks,
  listNatTables,
  listRoutes,
  listTaps,
  setupHostNetwork,
  teardownHostNetwork,
  type NatSpec,
  type Subnet,
  type VmNetRule,
} from "./index.ts";
import { NetnsLab, canUseNetns, waitForLine } from "../../test/kits/netns.ts";

const skip = !(await canUseNetns()) && "needs root and iproute2 to create network namespaces";
const BRIDGE = "banger0";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("host network setup and teardown", { skip }, () => {
  const lab = new NetnsLab();
  let ns = "";
  before(async () => {
    ns = await lab.add("setup");
  });
  after(() => lab.cleanup());

  test("setup is idempotent; teardown leaves no table, tap or bridge", async () => {
    const t = lab.target(ns);
    const subnet = chooseSubnet(await listRoutes(t), { bridge: BRIDGE });
    const spec: NatSpec = { bridge: BRIDGE, subnet, vms: [] };
    await setupHostNetwork(t, spec);
    const pool = new TapPool({ target: t, bridge: BRIDGE, size: 2 });
    await pool.fill();
    const tap = await pool.acquire();
    await pool.settled();
    spec.vms = [{ ip: allocateAddress(subnet, []), port: tap, egress: "full" }] as VmNetRule[];
    await setupHostNetwork(t, spec);
    await setupHostNetwork(t, spec); // again: same state, no error

    const links = await listLinks(t);
    const br = links.find((l) => l.ifname === BRIDGE);
    assert.equal(br?.linkinfo?.info_kind, "bridge");
    assert.ok(br?.flags?.includes("UP"));
    assert.equal(br?.address, bridgeMac(BRIDGE), "a fixed MAC: adding or removing taps never changes the gateway's MAC");
    assert.deepEqual(
      br?.addr_info?.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
      [`${gatewayOf(subnet)}/24`],
    );
    assert.equal((await listTaps(t)).length, 3, "one tap in use, two idle in the pool");
    assert.ok(links.filter((l) => l.ifname.startsWith("bgrtap")).every((l) => l.master === BRIDGE));
    assert.deepEqual((await listNatTables(t)).sort(), ["bridge banger", "inet banger"]);
    assert.equal((await lab.exec(ns, ["sysctl", "-n", "net.ipv4.ip_forward"])).trim(), "1");

    await pool.close();
    await teardownHostNetwork(t, { bridge: BRIDGE });
    await teardownHostNetwork(t, { bridge: BRIDGE }); // nothing left to remove: still fine
    const left = (await listLinks(t)).map((l) => l.ifname);
    assert.deepEqual(left, ["lo"]);
    assert.deepEqual(await listNatTables(t), []);
    assert.equal((await lab.exec(ns, ["nft", "list", "tables"])).trim(), "");
  });

  test("tap pool: acquire skips tap creation", async (t) => {
    const target = lab.target(ns);
    const subnet: Subnet = { network: "172.30.0.0", prefix: 24 };
    await setupHostNetwork(target, { bridge: BRIDGE, subnet, vms: [] });
    const rounds = 5;
    const created: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const start = performance.now();
      await createTap(target, `bgrtapx${i}`, BRIDGE);
      created.push(performance.now() - start);
      await deleteTap(target, `bgrtapx${i}`);
    }
    const pool = new TapPool({ target, bridge: BRIDGE, size: rounds });
    await pool.fill();
    const acquired: number[] = [];
    const taps: string[] = [];
    for (let i = 0; i < rounds; i++) {
      const start = performance.now();
      taps.push(await pool.acquire());
      acquired.push(performance.now() - start);
    }
    await pool.settled();
    const links = await listLinks(target);
    for (const name of taps) {
      const link = links.find((l) => l.ifname === name);
      assert.equal(link?.master, BRIDGE, `${name} is on the bridge`);
      assert.ok(link?.flags?.includes("UP"), `${name} is up`);
    }
    for (const name of taps) await pool.release(name);
    await pool.close();
    assert.deepEqual(await listTaps(target), []);
    const createMs = median(created);
    const acquireMs = median(acquired);
    t.diagnostic(`tap create ${createMs.toFixed(2)} ms, pool acquire ${acquireMs.toFixed(3)} ms (median of ${rounds})`);
    assert.ok(acquireMs < createMs / 10, "acquiring from the pool is at least 10x faster than creating a tap");
    await teardownHostNetwork(target, { bridge: BRIDGE });
  });
});

describe("packets from stand-in guests", { skip }, () => {
  const lab = new NetnsLab();
  let host = "";
  let outside = "";
  const guests: Record<string, { ns: string; ip: string; port: string }> = {};
  let subnet: Subnet = { network: "0.0.0.0", prefix: 24 };
  let gw = "";
  let server: ChildProcess | undefined;

  before(async () => {
    host = await lab.add("host");
    outside = await lab.add("out");
    // The "internet": 192.0.2.0/24 between host and outside; public, private and metadata
    // addresses on the outside's loopback, one HTTP server answering with the client address.
    await lab.ip(host, "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", outside);
    await lab.ip(host, "addr", "add", "192.0.2.2/24", "dev", "up0");
    await lab.ip(host, "link", "set", "up0", "up");
    await lab.ip(host, "route", "add", "default", "via", "192.0.2.1");
    await lab.ip(outside, "addr", "add", "192.0.2.1/24", "dev", "wan0");
    await lab.ip(outside, "link", "set", "wan0", "up");
    for (const a of ["198.51.100.1/32", "10.200.0.1/32", "169.254.169.254/32"]) await lab.ip(outside, "addr", "add", a, "dev", "lo");
    server = lab.spawn(outside, [
      process.execPath,
      "-e",
      `
      require("http").createServer((q, r) => r.end(q.socket.remoteAddress)).listen(8080, "0.0.0.0", () => console.log("ready"));
      require("dgram").createSocket("udp4").on("message", (m) => console.log("udp " + m)).bind(9999);`,
    ]);
    await waitForLine(server, /ready/);

    const t = lab.target(host);
    subnet = chooseSubnet(await listRoutes(t), { bridge: BRIDGE });
    gw = gatewayOf(subnet);
    await setupHostNetwork(t, { bridge: BRIDGE, subnet, vms: [] });
    const used: string[] = [];
    for (const name of ["alpha", "beta"]) {
      const ns = await lab.add(name);
      const ip = allocateAddress(subnet, used);
      used.push(ip);
      const port = `vg-${name}`;
      // A veth whose host end is a bridge port stands in for the VM's tap.
      await lab.ip(host, "link", "add", port, "master", BRIDGE, "type", "veth", "peer", "name", "eth0", "netns", ns);
      await lab.ip(host, "link", "set", port, "up");
      await lab.ip(ns, "addr", "add", `${ip}/${subnet.prefix}`, "dev", "eth0");
      await lab.ip(ns, "link", "set", "eth0", "up");
      await lab.ip(ns, "route", "add", "default", "via", gw);
      guests[name] = { ns, ip, port };
    }
    const dns = lab.spawn(host, [
      process.execPath,
      "--import",
      "tsx",
      join(import.meta.dirname, "..", "..", "test", "fixtures", "dns-server.ts"),
      gw,
      JSON.stringify({ alpha: guests.alpha!.ip, beta: guests.beta!.ip }),
    ]);
    await waitForLine(dns, /ready/, 20_000);
  });
  after(() => lab.cleanup());

  async function policy(rules: Record<string, Partial<VmNetRule>>): Promise<void> {
    const vms = Object.entries(guests).map(([name, g]) => ({ ip: g.ip, port: g.port, egress: "full" as const, ...rules[name] }));
    await setupHostNetwork(lab.target(host), { bridge: BRIDGE, subnet, vms });
    // Unanswered ARP from an earlier check would delay the next probe past ping's 1 s wait.
    for (const g of Object.values(guests)) await lab.ip(g.ns, "neigh", "flush", "all");
  }
  /** The body of GET http://addr:8080/ from the guest, or undefined when unreachable. */
  async function fetchFrom(guest: string, addr: string, extra: string[] = []): Promise<string | undefined> {
    const res = await lab.try(guests[guest]!.ns, ["curl", "-s", "--connect-timeout", "1", "--max-time", "2", ...extra, `http://${addr}:8080/`]);
    return res.code === 0 ? res.stdout : undefined;
  }
  async function pings(guest: string, addr: string): Promise<boolean> {
    return (await lab.try(guests[guest]!.ns, ["busybox", "ping", "-c", "1", "-W", "1", addr])).code === 0;
  }
  async function dig(guest: string, name: string): Promise<string> {
    return (await lab.try(guests[guest]!.ns, ["dig", `@${gw}`, name, "A", "+time=1", "+tries=1"])).stdout;
  }

  test("full: pings the gateway, reaches outside through NAT, cannot reach the other guest", async () => {
    await policy({});
    assert.ok(await pings("alpha", gw));
    assert.equal(await fetchFrom("alpha", "198.51.100.1"), "192.0.2.2", "the server sees the host's masqueraded address");
    assert.equal(await fetchFrom("alpha", "10.200.0.1"), "192.0.2.2");
    const [toBeta, fromBeta] = await Promise.all([pings("alpha", guests.beta!.ip), pings("beta", guests.alpha!.ip)]);
    assert.equal(toBeta, false);
    assert.equal(fromBeta, false);
  });

  test("dig @gateway answers <name>.vm and refuses other names", async () => {
    await policy({ alpha: { egress: "none" } });
    const out = await dig("alpha", "beta.vm");
    assert.match(out, /status: NOERROR/);
    assert.match(out, new RegExp(`^beta\\.vm\\.\\s+\\d+\\s+IN\\s+A\\s+${guests.beta!.ip.replace(/\./g, "\\.")}$`, "m"));
    assert.match(await dig("alpha", "example.com"), /status: REFUSED/);
    assert.match(await dig("alpha", "nosuch.vm"), /status: NXDOMAIN/);
  });

  test("public: internet yes; private ranges, metadata and host services no", async () => {
    await policy({ alpha: { egress: "public" } });
    const [pub, priv, metadata, hostSsh, control] = await Promise.all([
      fetchFrom("alpha", "198.51.100.1"),
      fetchFrom("alpha", "10.200.0.1"),
      fetchFrom("alpha", "169.254.169.254"),
      fetchFrom("alpha", "192.0.2.2"), // the host's own uplink address
      fetchFrom("beta", "169.254.169.254"), // beta is full: the address is reachable at all
    ]);
    assert.equal(pub, "192.0.2.2");
    assert.equal(priv, undefined);
    assert.equal(metadata, undefined);
    assert.equal(hostSsh, undefined);
    assert.equal(control, "192.0.2.2");
    assert.ok(await pings("alpha", gw), "the gateway still answers");
  });

  test("the guests' DNS answers only the bridge and the host: a machine outside cannot reach it, with its own address or a guest's", async () => {
    await policy({});
    const ask = async (ns: string, ...extra: string[]) => (await lab.try(ns, ["dig", `@${gw}`, "alpha.vm", "A", "+time=1", "+tries=1", ...extra])).stdout;
    // The outside routes the guests' subnet through the host (a LAN neighbour can), and holds
    // a guest's address too: access is by source address, so a spoofed one must never arrive.
    await lab.ip(outside, "route", "add", `${subnet.network}/${subnet.prefix}`, "via", "192.0.2.2");
    await lab.ip(outside, "addr", "add", `${guests.beta!.ip}/32`, "dev", "lo");
    // beta counts DNS replies reaching it (it asks nothing meanwhile).
    await lab.exec(guests.beta!.ns, ["nft", "add table inet count; add chain inet count in { type filter hook input priority 0; }; add rule inet count in udp sport 53 counter"]);
    const repliesAtBeta = async () => Number(/packets (\d+)/.exec(await lab.exec(guests.beta!.ns, ["nft", "list", "chain", "inet", "count", "in"]))?.[1]);
    try {
      assert.doesNotMatch(await ask(outside), /status:/, "no answer to the outside's own address");
      assert.doesNotMatch(await ask(outside, "+tcp"), /status:/);
      await ask(outside, "-b", guests.beta!.ip); // the reply, if any, goes to beta
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await repliesAtBeta(), 0, "beta got no reply to a query it never sent");
      assert.match(await ask(host), /status: NOERROR/, "the host still asks");
      assert.match(await ask(guests.alpha!.ns), /status: NOERROR/, "and so do guests");
    } finally {
      await lab.exec(guests.beta!.ns, ["nft", "delete table inet count"]);
      await lab.ip(outside, "addr", "del", `${guests.beta!.ip}/32`, "dev", "lo");
      await lab.ip(outside, "route", "del", `${subnet.network}/${subnet.prefix}`, "via", "192.0.2.2");
    }
  });

  /** Sends one UDP datagram from `source` inside the guest to the outside's port 9999. */
  async function sendUdp(guest: string, source: string, text: string): Promise<void> {
    await lab.exec(guests[guest]!.ns, [
      process.execPath,
      "-e",
      `const s = require("dgram").createSocket("udp4");
      s.bind({ address: "${source}" }, () => s.send("${text}", 9999, "198.51.100.1", () => s.close()));`,
    ]);
  }

  test("none: nothing leaves; borrowing another guest's address does not help", async () => {
    await policy({ alpha: { egress: "none" } });
    assert.equal(await fetchFrom("alpha", "198.51.100.1"), undefined);
    // One-way traffic is enough to leak data, so check what arrives outside, not replies.
    let seen = "";
    server!.stdout!.on("data", (b) => (seen += b));
    await lab.ip(guests.alpha!.ns, "addr", "add", `${guests.beta!.ip}/32`, "dev", "eth0");
    try {
      await sendUdp("alpha", guests.beta!.ip, "spoofed");
      await sendUdp("beta", guests.beta!.ip, "genuine");
      await new Promise((r) => setTimeout(r, 300));
      assert.match(seen, /udp genuine/);
      assert.doesNotMatch(seen, /udp spoofed/);
    } finally {
      await lab.ip(guests.alpha!.ns, "addr", "del", `${guests.beta!.ip}/32`, "dev", "eth0");
    }
    assert.equal(await fetchFrom("beta", "198.51.100.1"), "192.0.2.2", "the other guest is unaffected");
  });

  test("peer: two guests with peer set reach each other; one alone does not", async () => {
    await policy({ alpha: { peer: true } });
    assert.equal(await pings("alpha", guests.beta!.ip), false);
    // Nor through the gateway (both routing each other via it): the host does not route
    // from one guest back into the bridge for another.
    const viaGateway = async (op: "add" | "del") => {
      await lab.ip(guests.alpha!.ns, "route", op, `${guests.beta!.ip}/32`, "via", gw);
      await lab.ip(guests.beta!.ns, "route", op, `${guests.alpha!.ip}/32`, "via", gw);
    };
    await viaGateway("add");
    try {
      assert.equal(await pings("alpha", guests.beta!.ip), false);
    } finally {
      await viaGateway("del");
    }
    await policy({ alpha: { peer: true }, beta: { peer: true } });
    assert.ok(await pings("alpha", guests.beta!.ip));
    assert.ok(await pings("beta", guests.alpha!.ip));
  });
});
