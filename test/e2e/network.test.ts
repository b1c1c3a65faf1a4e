// VM networking for real: the daemon runs inside a network namespace this file creates
// (the first CLI call starts it there, so it inherits the namespace), with a second
// namespace on a veth pair standing in for the internet, with a web server and a resolver
// of the test's own (the daemon is told to use it: BANGER_DNS_UPSTREAM, so the host's
// /etc/resolv.conf plays no part). Three busybox VMs: `full`, `public` and `none`. Checks
// addresses, NAT, egress policy, isolation, `.vm` DNS, names resolved for guests, port
// forwarding over the agent channel, OpenSSH through the ProxyCommand, and that
// `daemon stop --cleanup-network` leaves no table, tap or bridge. Nothing here touches
// the host's own network: every namespace is removed at the end.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { NetnsLab, canUseNetns, waitForLine } from "../kits/netns.ts";
import { which } from "../../src/util/exec.ts";
import { REPO, type CliResult, isAlive, makeTempHome, prepareBootableHome, stopDaemon } from "../helpers.ts";

const skip = !(await canUseNetns()) && "needs root and iproute2 to create network namespaces";
const BRIDGE = "banger0";
/** The "internet's" resolver, and the name it serves for the web server. */
const RESOLVER = "198.51.100.53";
const WEB_NAME = "web.example.test";

describe("vm networking (real VMs, daemon inside a network namespace)", { skip }, () => {
  const lab = new NetnsLab();
  const { home, cleanup } = makeTempHome();
  const userHome = join(home, "user");
  let env: NodeJS.ProcessEnv = {};
  let ns = "";
  let gateway = "";
  const ips: Record<string, string> = {};
  /** Questions the "internet's" resolver got ("NAME TYPE TRANSPORT"). */
  const upstreamQuestions: string[] = [];
  let resolver: ChildProcess | undefined;

  /** bin/banger inside the daemon's namespace, networking on. */
  function banger(args: string[], opts: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", ns, join(REPO, "bin/banger"), ...args], {
        // 127.0.0.53 first: a loopback stub that nothing answers in this namespace is skipped.
        env: { ...process.env, ...env, BANGER_NETWORK: "on", BANGER_HOME: home, HOME: userHome, BANGER_DNS_UPSTREAM: `127.0.0.53,${RESOLVER}` },
        timeout: opts.timeoutMs ?? 120_000,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b) => (stdout += b));
      child.stderr.on("data", (b) => (stderr += b));
      child.stdin.end(opts.input ?? "");
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    });
  }
  async function ok(args: string[], opts: { input?: Buffer | string } = {}): Promise<string> {
    const r = await banger(args, opts);
    assert.equal(r.code, 0, `banger ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }
  /** A shell command in a guest; resolves with its exit code and output. */
  const guest = (vm: string, script: string) => banger(["vm", "exec", vm, "--user", "root", "--", "sh", "-c", script]);
  /**
   * GET http://addr:8080/ from a guest with busybox nc (busybox-static's wget segfaults in
   * the guest); resolves with the body and nc's status and error text.
   */
  async function fetch(vm: string, addr: string): Promise<{ code: number; body: string; stderr: string }> {
    const r = await guest(vm, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${addr} 8080`);
    return { code: r.code, body: r.stdout.split("\r\n\r\n")[1] ?? "", stderr: r.stderr };
  }

  before(async () => {
    mkdirSync(userHome, { recursive: true });
    // Kernel and image are made in the host namespace with networking off (helpers.ts);
    // that daemon is stopped so the next one starts inside the namespace.
    ({ env } = await prepareBootableHome(home));
    await stopDaemon(home);

    ns = await lab.add("host");
    const outside = await lab.add("out");
    await lab.ip(ns, "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", outside);
    await lab.ip(ns, "addr", "add", "192.0.2.2/24", "dev", "up0");
    await lab.ip(ns, "link", "set", "up0", "up");
    await lab.ip(ns, "route", "add", "default", "via", "192.0.2.1");
    await lab.ip(outside, "addr", "add", "192.0.2.1/24", "dev", "wan0");
    await lab.ip(outside, "link", "set", "wan0", "up");
    // The "internet": a public, a private and the cloud metadata address, one HTTP server
    // answering with the client's address.
    for (const a of ["198.51.100.1/32", "10.200.0.1/32", "169.254.169.254/32", `${RESOLVER}/32`]) await lab.ip(outside, "addr", "add", a, "dev", "lo");
    const server = lab.spawn(outside, [process.execPath, "-e", `require("http").createServer((q, r) => r.end("seen " + q.socket.remoteAddress)).listen(8080, "0.0.0.0", () => console.log("ready"))`]);
    await waitForLine(server, /ready/);
    // Its resolver: WEB_NAME is the web server.
    resolver = lab.spawn(outside, [process.execPath, "--import", "tsx", join(REPO, "test/kits/dns.ts"), RESOLVER, JSON.stringify({ [WEB_NAME]: { A: ["198.51.100.1"], ttl: 120 } })]);
    await waitForLine(resolver, /^ready$/, 20_000);
    resolver.stdout!.on("data", (b: Buffer) =>
      upstreamQuestions.push(
        ...b
          .toString()
          .split("\n")
          .filter((l) => l.startsWith("question "))
          .map((l) => l.slice(9)),
      ),
    );

    for (const [name, net] of [
      ["full", "full"],
      ["pub", "public"],
      ["nonet", "none"],
    ] as const) {
      await ok(["vm", "create", "--name", name, "--image", "busybox", "--memory", "256M", "--net", net]);
    }
    const status = JSON.parse(await ok(["net", "status", "--json"]));
    gateway = status.gateway;
    for (const name of ["full", "pub", "nonet"]) ips[name] = JSON.parse(await ok(["vm", "show", name, "--json"])).ip;
  });

  after(async () => {
    if (ns) {
      for (const name of ["full", "pub", "nonet"]) await banger(["vm", "rm", "-f", name]).catch(() => undefined);
      await banger(["daemon", "stop", "--cleanup-network"]).catch(() => undefined);
    }
    await stopDaemon(home);
    await lab.cleanup();
    cleanup();
  });

  it("gives each networked VM an address in the bridge subnet, configured in the guest", async () => {
    assert.match(gateway, /^172\.\d+\.\d+\.1$/);
    const prefix = gateway.replace(/\.1$/, ".");
    assert.ok(ips.full!.startsWith(prefix), `${ips.full} is in ${gateway}'s /24`);
    assert.ok(ips.pub!.startsWith(prefix));
    assert.notEqual(ips.full, ips.pub);
    assert.equal(ips.nonet, null, "--net none: no address");
    const show = JSON.parse(await ok(["vm", "show", "full", "--json"]));
    assert.equal(show.net, "full");
    assert.match(show.tap, /^bgrtap\d+$/);
    const addr = await guest("full", "ip -4 addr show eth0");
    assert.match(addr.stdout, new RegExp(`inet ${ips.full!.replace(/\./g, "\\.")}/24`));
    assert.equal((await guest("full", `ping -c 1 -W 3 ${gateway}`)).code, 0, "pings the gateway");
  });

  it("full: reaches the outside through NAT", async () => {
    const r = await fetch("full", "198.51.100.1");
    assert.equal(r.body, "seen 192.0.2.2", `the server sees the host's masqueraded address (${r.code} ${r.stderr})`);
    assert.equal((await fetch("full", "10.200.0.1")).body, "seen 192.0.2.2");
  });

  it("public: internet yes; private ranges and the metadata address no", async () => {
    const [pub, priv, metadata] = await Promise.all([fetch("pub", "198.51.100.1"), fetch("pub", "10.200.0.1"), fetch("pub", "169.254.169.254")]);
    assert.equal(pub.body, "seen 192.0.2.2");
    assert.notEqual(priv.code, 0, "a private address is dropped");
    assert.notEqual(metadata.code, 0, "the metadata address is dropped");
    assert.equal((await guest("pub", `ping -c 1 -W 3 ${gateway}`)).code, 0, "the gateway still answers");
  });

  it("none: no NIC, no route", async () => {
    const links = await guest("nonet", "ls /sys/class/net");
    assert.deepEqual(links.stdout.trim().split(/\s+/), ["lo"]);
    const r = await fetch("nonet", "198.51.100.1");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unreachable/i);
  });

  it("VMs cannot reach each other by default", async () => {
    const [there, back] = await Promise.all([guest("full", `ping -c 1 -W 2 ${ips.pub}`), guest("pub", `ping -c 1 -W 2 ${ips.full}`)]);
    assert.notEqual(there.code, 0);
    assert.notEqual(back.code, 0);
  });

  it("dig @gateway answers NAME.vm", async () => {
    const dig = (name: string) => lab.exec(ns, ["dig", `@${gateway}`, name, "A", "+short", "+time=2", "+tries=1"]);
    assert.equal((await dig("full.vm")).trim(), ips.full);
    assert.equal((await dig("PUB.vm")).trim(), ips.pub);
    assert.match(await lab.exec(ns, ["dig", `@${gateway}`, "nosuch.vm", "+time=2", "+tries=1"]), /status: NXDOMAIN/);
    // Without systemd-resolved (as here), `dns setup` says what to configure. (With it, it
    // would configure the host's resolved for a link that only exists in this namespace.)
    if (!which("resolvectl")) assert.match(await ok(["dns", "setup"]), new RegExp(`dig @${gateway.replace(/\./g, "\\.")} <vm-name>\\.vm`));
    // Guests use it too (the agent wrote it into resolv.conf).
    assert.match((await guest("full", "nslookup pub.vm")).stdout, new RegExp(ips.pub!.replace(/\./g, "\\.")));
  });

  it("guests resolve names outside .vm through the host's resolvers: full and public yes, none and the host no", async () => {
    const lookedUp = await guest("full", `nslookup ${WEB_NAME}`);
    assert.equal(lookedUp.code, 0, lookedUp.stdout + lookedUp.stderr);
    assert.match(lookedUp.stdout, /Address:\s+198\.51\.100\.1\b/);
    // Fetched by name (nc resolves through the guest's resolv.conf: the gateway).
    const r = await guest("full", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${WEB_NAME} 8080`);
    assert.equal(r.stdout.split("\r\n\r\n")[1], "seen 192.0.2.2", `fetched by name (${r.code} ${r.stderr})`);
    assert.match((await guest("pub", `nslookup ${WEB_NAME}`)).stdout, /Address:\s+198\.51\.100\.1\b/, "public: names too");
    const nx = await guest("full", "nslookup nosuch.example.test");
    assert.match(nx.stdout + nx.stderr, /NXDOMAIN/);
    // Asked again: answered from the daemon's cache, the resolver saw the A question once.
    await guest("pub", `nslookup ${WEB_NAME}`);
    assert.equal(upstreamQuestions.filter((q) => q.startsWith(`${WEB_NAME} A `)).length, 1, upstreamQuestions.join("\n"));
    assert.ok(!upstreamQuestions.some((q) => /\.vm /.test(q)), "`.vm` names never leave");

    const none = await guest("nonet", `nslookup ${WEB_NAME}`);
    assert.notEqual(none.code, 0, "--net none: no name resolves");
    assert.doesNotMatch(none.stdout, /198\.51\.100\.1/);
    // The host (not a guest) gets `.vm` names only: banger is no resolver for anyone else.
    assert.match(await lab.exec(ns, ["dig", `@${gateway}`, WEB_NAME, "+time=3", "+tries=1"]), /status: REFUSED/);
    assert.match(await ok(["net", "status"]), new RegExp(`dnsUpstream:\\s+127\\.0\\.0\\.53 ${RESOLVER.replace(/\./g, "\\.")}`));
  });

  it("lists guest ports and forwards a host loopback port to a guest httpd (--net none)", async () => {
    await ok(["vm", "exec", "nonet", "--user", "root", "--", "sh", "-c", "mkdir -p /www && echo hello-from-guest > /www/index.html && httpd -p 8080 -h /www"]);
    const ports = JSON.parse(await ok(["vm", "ports", "nonet", "--json"])) as { port: number; command?: string }[];
    const httpd = ports.find((p) => p.port === 8080);
    assert.ok(httpd, `8080 is listed: ${JSON.stringify(ports)}`);
    assert.match(httpd.command ?? "", /httpd/);
    assert.match(await ok(["vm", "ports", "nonet"]), /^PROTO\s+ADDRESS\s+PORT\s+PID\s+COMMAND\n.*8080/m);

    const fwd = lab.spawn(ns, ["env", `BANGER_HOME=${home}`, `HOME=${userHome}`, "BANGER_NETWORK=on", join(REPO, "bin/banger"), "vm", "forward", "nonet", "0:8080"]);
    const line = await waitForLine(fwd, /^forwarding 127\.0\.0\.1:\d+ -> nonet:8080$/, 20_000);
    const port = Number(/:(\d+) ->/.exec(line)![1]);
    const curl = (path: string) => lab.try(ns, ["curl", "-s", "--max-time", "10", `http://127.0.0.1:${port}${path}`]);
    const [a, b] = await Promise.all([curl("/"), curl("/index.html")]);
    assert.equal(a.stdout, "hello-from-guest\n");
    assert.equal(b.stdout, "hello-from-guest\n");
    const missing = await lab.try(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", `http://127.0.0.1:${port}/nope`]);
    assert.equal(missing.stdout, "404");
    fwd.kill("SIGINT");
    const code = await new Promise((r) => fwd.once("close", r));
    assert.equal(code, 0, "Ctrl-C ends the forward cleanly");
    assert.notEqual((await curl("/")).code, 0, "nothing listens once it stopped");
  });

  it("OpenSSH reaches the guest through `banger vm ssh-proxy` (the busybox preset's dropbear, started on demand)", {
    skip: !existsSync("/usr/sbin/dropbear") && "needs dropbear-bin on the host (the busybox preset copies it in)",
  }, async () => {
    const cfg = JSON.parse(await ok(["ssh-config", "--json"]));
    assert.match(cfg.include, /^Include ".*\/ssh\/config"$/);
    assert.deepEqual(cfg.installed.sort(), ["full", "nonet", "pub"], "the key went into every running VM");
    const authorized = await guest("nonet", "cat /root/.ssh/authorized_keys");
    assert.match(authorized.stdout, /^ssh-ed25519 \S+ banger$/m);
    const dev = await guest("nonet", "stat -c '%U %a' /home/dev/.ssh /home/dev/.ssh/authorized_keys && cat /home/dev/.ssh/authorized_keys");
    assert.equal(dev.stdout, `dev 700\ndev 600\n${authorized.stdout}`, "the image's dev user gets the key too");
    const sshConfig = join(userHome, "ssh_config");
    writeFileSync(sshConfig, `${cfg.include}\n`);
    const ssh = await lab.try(ns, ["env", `HOME=${userHome}`, "ssh", "-F", sshConfig, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "nonet.vm", "echo ssh-works; hostname"], 60_000);
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout, "ssh-works\nnonet\n");
  });

  it("after a daemon crash, a VM that died meanwhile loses its tap; the others keep networking", async () => {
    const full = JSON.parse(await ok(["vm", "show", "full", "--json"]));
    const pub = JSON.parse(await ok(["vm", "show", "pub", "--json"]));
    process.kill(Number(readFileSync(join(home, "run", "bangerd.pid"), "utf8")), "SIGKILL");
    process.kill(pub.pid, "SIGKILL");
    for (let i = 0; i < 100 && isAlive(pub.pid); i++) await new Promise((r) => setTimeout(r, 50));
    // The next command starts a new daemon (in the namespace), which reconciles.
    const after = JSON.parse(await ok(["vm", "show", "pub", "--json"]));
    assert.equal(after.state, "stopped");
    assert.equal(after.tap, null);
    const taps = (await lab.exec(ns, ["ip", "-o", "link", "show"])).split("\n").filter((l) => / bgrtap\d+:/.test(l));
    // The pool may reuse the dead VM's tap name for a fresh idle tap: count instead.
    assert.equal(taps.length, 1 + 2, `the running VM's tap and a pool of 2, nothing else:\n${taps.join("\n")}`);
    assert.deepEqual(
      taps.filter((l) => l.includes("LOWER_UP")).map((l) => / (bgrtap\d+):/.exec(l)![1]),
      [full.tap],
      "only the running VM's tap has a guest on it",
    );
    assert.equal(JSON.parse(await ok(["vm", "show", "full", "--json"])).tap, full.tap);
    assert.match(await lab.exec(ns, ["nft", "list", "set", "bridge", "banger", "ports"]), new RegExp(`elements = \\{ "${full.tap}" \\}`));
    assert.equal((await fetch("full", "198.51.100.1")).body, "seen 192.0.2.2");
    assert.equal((await lab.exec(ns, ["dig", `@${gateway}`, "full.vm", "+short", "+time=2", "+tries=1"])).trim(), ips.full, "DNS is served again");
  });

  it("stop releases the VM's tap; daemon stop --cleanup-network leaves no table, tap or bridge", async () => {
    const refused = await banger(["daemon", "stop", "--cleanup-network"]);
    assert.equal(refused.code, 1, "refused while a VM runs with networking");
    assert.match(refused.stderr, /VMs are running with networking: full/);
    const { tap } = JSON.parse(await ok(["vm", "show", "full", "--json"]));
    await ok(["vm", "stop", "full"]);
    const links = () => lab.exec(ns, ["ip", "-o", "link", "show"]);
    assert.doesNotMatch(await links(), new RegExp(`\\b${tap}\\b`), "the stopped VM's tap is gone");
    assert.equal(JSON.parse(await ok(["vm", "show", "full", "--json"])).tap, null);

    for (const name of ["full", "pub", "nonet"]) await ok(["vm", "rm", "-f", name]);
    const stop = await ok(["daemon", "stop", "--cleanup-network"]);
    assert.match(stop, /network removed/);
    assert.equal((await lab.exec(ns, ["nft", "list", "tables"])).trim(), "");
    const left = await links();
    assert.doesNotMatch(left, new RegExp(`${BRIDGE}|bgrtap`));
    assert.deepEqual(
      left
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(":")[1]!.trim().split("@")[0]),
      ["lo", "up0"],
    );
  });
});
