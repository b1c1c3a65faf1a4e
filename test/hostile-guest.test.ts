// A hostile guest against the real daemon and the real CLI: what the guest reports (port
// listings, session names and argv, error messages) reaches the terminal inert and the store
// only under the name rule, and `ssh-config` ends within its bound when a guest never
// finishes or floods output. The guest is test/hostile-agent/serve-text.ts (the fake agent
// speaking the real protocol: see fake.ts for why); everything else is real: bangerd adopts it
// as a running VM's VMM at start-up, the CLI talks to bangerd over its socket. Text the
// protocol's rules forbid (a port address, a session name) is refused by the host's agent
// client with the whole reply; that refusal is checked here as the user and the store see it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { openStore } from "../src/store/index.ts";
import { REPO, makeTempHome, runBanger, stopDaemon } from "./helpers.ts";
import { adoptableVmm, spawnUntilReady } from "./kits/agent-process.ts";
import { HOSTILE } from "./hostile-agent/fake.ts";

/** Anything a terminal could act on, or that reorders text: must never be printed raw. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** The hostile guest (serve-text.ts) as the agent of VM `id-<name>`'s runtime dir under `home`. */
function startHostileAgent(home: string, name: string, exec: "hang" | "flood", replies: "valid" | "rule-breaking"): Promise<ChildProcess> {
  const serve = (sock: string) => spawnUntilReady(process.execPath, ["--import", "tsx", join(REPO, "test/hostile-agent/serve-text.ts"), sock, exec, replies]);
  return adoptableVmm(join(home, "run", "vms", `id-${name}`), serve);
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
    // evil: replies within the rules, exec hangs; flood: replies that break them, exec floods.
    for (const [name, exec, replies] of [
      ["evil", "hang", "valid"],
      ["flood", "flood", "rule-breaking"],
    ] as const) {
      store.insertVm({
        name,
        id: `id-${name}`,
        state: "running",
        image: "i",
        kernel: "k",
        vmm: "qemu",
        cpus: 1,
        memoryBytes: 256 * 1024 ** 2,
        diskBytes: 0,
        pid: 1,
        ip: null,
        error: null,
        config: {},
      });
      agents.push(await startHostileAgent(home, name, exec, replies));
    }
    // A stopped VM whose console log grew huge (8 GiB, sparse) while nothing capped it.
    store.insertVm({
      name: "quiet",
      id: "id-quiet",
      state: "stopped",
      image: "i",
      kernel: "k",
      vmm: "qemu",
      cpus: 1,
      memoryBytes: 256 * 1024 ** 2,
      diskBytes: 0,
      pid: null,
      ip: null,
      error: `guest said ${HOSTILE}`,
      config: {},
    });
    // Image metadata comes from an OCI config, catalog descriptions from a catalog: hostile too.
    store.putImage({
      name: "oci-evil",
      source: "oci:example/evil",
      digest: "",
      kernelRef: "k",
      distro: "alpine",
      arch: "x86_64",
      sizeBytes: 1,
      config: { labels: { "org.evil": HOSTILE }, entrypoint: [HOSTILE], env: [`A=${HOSTILE}`] },
    });
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

  it("`vm ports` prints process names inert, --json keeps them exact and inert; an address that is not an IP is refused, inertly", async () => {
    const res = await runBanger(["vm", "ports", "evil"], { home, env });
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout, RAW_CONTROL);
    assert.match(res.stdout, /x\\e\[2J\\e\]52;c;cm0gLXJmIH4=\\x07\\x9b31m\\u\{202e\}evil\\u\{2066\}\\x7f\\x00\\x01\\x02/, "escape sequences are shown, escaped");
    const json = await runBanger(["vm", "ports", "evil", "--json"], { home, env });
    assert.doesNotMatch(json.stdout.replace(/\n/g, ""), RAW_CONTROL);
    assert.equal(JSON.parse(json.stdout)[0].command, HOSTILE);
    const bad = await runBanger(["vm", "ports", "flood"], { home, env });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^banger: guest agent protocol violation: ports: an address that is not an IP address \(.*\)\n$/);
    assert.doesNotMatch(bad.stderr.trimEnd(), RAW_CONTROL);
    assert.doesNotMatch(bad.stdout + bad.stderr, /evil/, "nothing of the hostile reply is printed");
  });

  it("`session ls` shows argv inert and never stores a guest session name that breaks the name rule", async () => {
    const res = await runBanger(["session", "ls", "evil"], { home, env });
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout, RAW_CONTROL);
    assert.match(res.stdout, /ok-1/);
    assert.match(res.stdout, /x\\e\[2J\\e\]52;c;cm0gLXJmIH4=\\x07\\x9b31m/, "the argv is shown, escaped");
    const rows = res.stdout.trim().split("\n").slice(1);
    assert.equal(rows.length, 1, `the one session reported is listed once:\n${res.stdout}`);
    // A list with one hostile name is refused whole (the agent client's rule): nothing of it is listed or stored.
    const bad = await runBanger(["session", "ls", "flood"], { home, env });
    assert.equal(bad.code, 0, bad.stderr);
    assert.doesNotMatch(bad.stdout + bad.stderr, RAW_CONTROL);
    assert.doesNotMatch(bad.stdout, /ok-1|evil/);
    const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8");
    assert.match(log, /"vm":"flood","error":"guest agent protocol violation: session: a name that breaks the name rule \(/, "the reply came and was refused");
    const store = openStore(join(home, "banger.db"));
    try {
      assert.deepEqual(
        store.listSessions("evil").map((s) => s.name),
        ["ok-1"],
      );
      assert.deepEqual(
        store.listSessions("flood").map((s) => s.name),
        [],
      );
    } finally {
      store.close();
    }
  });

  it("VM fields, image metadata and catalog descriptions are printed inert", async () => {
    for (const args of [
      ["vm", "show", "quiet"],
      ["image", "show", "oci-evil"],
      ["image", "show", "oci-evil", "--json"],
    ]) {
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
    // Under --json the error is JSON on stdout: inert on the terminal, the guest's text exact once parsed.
    const json = await runBanger(["vm", "stats", "evil", "--json"], { home, env });
    assert.equal(json.code, 1);
    assert.doesNotMatch(json.stdout, RAW_CONTROL);
    assert.match((JSON.parse(json.stdout) as { error: { message: string } }).error.message, /\x9b31m\u202eevil/);
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
