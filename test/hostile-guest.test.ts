// A hostile guest against the real daemon and the real CLI: what the guest reports (port
// listings, session names and argv, error messages) reaches the terminal inert and the store
// only under the name rule, and `ssh-config` ends within its bound when a guest never
// finishes or floods output. The guest is test/hostile-guest-agent.ts (a fake speaking the real
// protocol: see its header for why); everything else is real: bangerd adopts it as a running
// VM's VMM at start-up, the CLI talks to bangerd over its socket.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { openStore } from "../src/store/index.ts";
import { makeTempHome, runBanger, stopDaemon } from "./helpers.ts";
import { HOSTILE } from "./hostile-guest-agent.ts";

/** Anything a terminal could act on, or that reorders text: must never be printed raw. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

function startHostileAgent(runtimeDir: string, mode: "hang" | "flood"): Promise<ChildProcess> {
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  const sock = join(runtimeDir, "agent.sock");
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "hostile-guest-agent.ts"), sock, runtimeDir, mode], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (b: Buffer) => {
      if (!b.toString().includes("ready")) return;
      // What the qemu driver records for adopt(): bangerd re-adopts this "VMM" when it starts.
      const state = { driver: "qemu", pid: child.pid, controlSocket: join(runtimeDir, "qmp.sock"), agentSocket: sock, sockets: [sock] };
      writeFileSync(join(runtimeDir, "vmm.json"), JSON.stringify(state));
      writeFileSync(join(runtimeDir, "vmm.pid"), `${child.pid}\n`);
      resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`hostile agent exited: ${code}`)));
  });
}

describe("a hostile guest", () => {
  const { home, cleanup } = makeTempHome();
  const catalog = join(home, "catalog.json");
  const env = { HOME: home, BANGER_SSH_KEYS_TIMEOUT_MS: "2000", BANGER_IMAGE_CATALOG: catalog };
  const agents: ChildProcess[] = [];

  before(async () => {
    const store = openStore(join(home, "banger.db"));
    store.putKernel({ name: "k", source: "test", kernelVersion: "6.1", distro: "debian", arch: "x86_64", vmlinuxSha256: "a".repeat(64), hasInitrd: false, modules: [], sizeBytes: 1 });
    store.putImage({ name: "i", source: "test", digest: "", kernelRef: "k", distro: "busybox", arch: "x86_64", sizeBytes: 1, config: {} });
    for (const [name, mode] of [["evil", "hang"], ["flood", "flood"]] as const) {
      store.insertVm({ name, id: `id-${name}`, state: "running", image: "i", kernel: "k", vmm: "qemu", cpus: 1, memoryMib: 256, diskBytes: 0, pid: 1, ip: null, error: null, config: {} });
      agents.push(await startHostileAgent(join(home, "run", "vms", `id-${name}`), mode));
    }
    // A stopped VM whose console log grew huge (8 GiB, sparse) while nothing capped it.
    store.insertVm({ name: "quiet", id: "id-quiet", state: "stopped", image: "i", kernel: "k", vmm: "qemu", cpus: 1, memoryMib: 256, diskBytes: 0, pid: null, ip: null, error: `guest said ${HOSTILE}`, config: {} });
    // Image metadata comes from an OCI config, catalog descriptions from a catalog: hostile too.
    store.putImage({ name: "oci-evil", source: "oci:example/evil", digest: "", kernelRef: "k", distro: "alpine", arch: "x86_64", sizeBytes: 1, config: { labels: { "org.evil": HOSTILE }, entrypoint: [HOSTILE], env: [`A=${HOSTILE}`] } });
    const entry = { name: "evilcat", distro: "busybox", arch: "x86_64", kernel_ref: "k", tarball_url: "x.tar.zst", tarball_sha256: "0".repeat(64), size_bytes: 1, description: HOSTILE };
    writeFileSync(catalog, JSON.stringify({ version: 1, entries: [entry] }));
    const quietLog = join(home, "run", "vms", "id-quiet", "console.log");
    mkdirSync(dirname(quietLog), { recursive: true });
    writeFileSync(quietLog, "");
    truncateSync(quietLog, 8 * 1024 ** 3);
    appendFileSync(quietLog, "\nthe last line\n");
    store.close();
  });
  after(async () => {
    await stopDaemon(home);
    for (const a of agents) a.kill("SIGKILL");
    cleanup();
  });

  it("`vm ports` prints process names and addresses inert; --json keeps them exact and inert", async () => {
    const res = await runBanger(["vm", "ports", "evil"], { home, env });
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout, RAW_CONTROL);
    assert.match(res.stdout, /x\\e\[2J\\e\]52;c;cm0gLXJmIH4=\\x07\\x9b31m\\u\{202e\}evil\\u\{2066\}\\x7f\\x00\\x01\\x02/, "escape sequences are shown, escaped");
    const json = await runBanger(["vm", "ports", "evil", "--json"], { home, env });
    assert.doesNotMatch(json.stdout.replace(/\n/g, ""), RAW_CONTROL);
    assert.equal(JSON.parse(json.stdout)[0].command, HOSTILE);
  });

  it("`session ls` shows argv inert and never stores a guest session name that breaks the name rule", async () => {
    const res = await runBanger(["session", "ls", "evil"], { home, env });
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout, RAW_CONTROL);
    assert.match(res.stdout, /ok-1/);
    const rows = res.stdout.trim().split("\n").slice(1);
    assert.equal(rows.length, 1, `only the well-named session is listed:\n${res.stdout}`);
    const store = openStore(join(home, "banger.db"));
    try {
      assert.deepEqual(store.listSessions("evil").map((s) => s.name), ["ok-1"]);
    } finally {
      store.close();
    }
  });

  it("VM fields, image metadata and catalog descriptions are printed inert", async () => {
    for (const args of [["vm", "show", "quiet"], ["image", "show", "oci-evil"], ["image", "show", "oci-evil", "--json"]]) {
      const res = await runBanger(args, { home, env });
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
      assert.doesNotMatch(res.stdout.replace(/\n/g, ""), RAW_CONTROL, args.join(" "));
      assert.match(res.stdout, /\\(x9b|u009b)31m/, `${args.join(" ")} shows the sequence escaped`);
    }
    // The catalog reader already refuses such a description: one clear line, nothing raw.
    const cat = await runBanger(["image", "list", "--available"], { home, env });
    assert.equal(cat.code, 1);
    assert.match(cat.stderr, /entries\[0\]\.description: expected a non-empty string of at most 1024 printable characters/);
    assert.doesNotMatch(cat.stderr.trimEnd(), RAW_CONTROL);
  });

  it("an error quoting the guest is printed inert", async () => {
    const res = await runBanger(["vm", "stats", "evil"], { home, env });
    assert.equal(res.code, 1);
    assert.doesNotMatch(res.stderr, RAW_CONTROL);
    assert.match(res.stderr, /\\x9b31m\\u\{202e\}evil/);
  });

  it("`vm logs` of a huge console log prints only its end, quickly", async () => {
    const started = Date.now();
    const res = await runBanger(["vm", "logs", "quiet"], { home, env, timeoutMs: 30_000 });
    assert.equal(res.code, 0, res.stderr);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.ok(res.stdout.length <= 64 * 1024, `printed ${res.stdout.length} bytes`);
    assert.match(res.stdout, /the last line\n$/);
    const small = await runBanger(["vm", "logs", "quiet", "--bytes", "100"], { home, env });
    assert.equal(small.stdout, "the last line\n");
  });

  it("`ssh-config` ends within its bound when one guest never finishes and another floods output", async () => {
    const started = Date.now();
    const res = await runBanger(["ssh-config"], { home, env, timeoutMs: 30_000 });
    const took = Date.now() - started;
    assert.equal(res.code, 0, res.stderr);
    assert.ok(took < 12_000, `took ${took} ms`);
    assert.doesNotMatch(res.stderr, RAW_CONTROL);
    for (const vm of ["evil", "flood"]) {
      assert.match(res.stderr, new RegExp(`key not installed in ${vm}: installing SSH keys in the guest did not finish within 2000 ms`));
    }
  });
});
