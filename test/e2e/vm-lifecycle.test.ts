// A real VM, end to end, as a user drives it: Debian's cloud kernel imported from its
// package, the busybox image made with make-bundle and pulled through a catalog, then
// create → exec → PTY → stop → start → daemon killed → rm. Boots under QEMU (TCG here).
// Then: a kernel and an image carrying unusable agents still boot with the daemon's own.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "../../src/config/index.ts";
import { runChecked, which } from "../../src/util/exec.ts";
import { spawnOnPty } from "../kits/pty.ts";
import { isAlive, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

describe("vm lifecycle (real VM under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env });
  const daemonPid = () => JSON.parse(readFileSync(join(home, "run", "bangerd.pid"), "utf8")) as number;

  before(async () => {
    ({ env } = await prepareBootableHome(home));
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "e2e"], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("creates a VM that boots to a ready agent, with progress phases", async () => {
    const r = await banger(["vm", "create", "--name", "e2e", "--image", "busybox", "--memory", "384M"]);
    assert.equal(r.code, 0, r.stderr);
    for (const phase of ["disk", "boot", "agent"]) assert.match(r.stderr, new RegExp(`${phase} done \\(\\d+\\.\\d+s\\)`));
    assert.match(r.stdout, /vm e2e running/);
    const show = JSON.parse((await banger(["vm", "show", "e2e", "--json"])).stdout);
    assert.equal(show.state, "running");
    assert.equal(show.memoryBytes, 384 * 1024 ** 2);
    assert.ok(isAlive(show.pid), "the VMM process runs");
    // Its guest RAM lives in a file on the tmpfs, which a snapshot copies.
    const memoryDir = resolvePaths({ BANGER_HOME: home }).memoryDir;
    assert.deepEqual(readdirSync(memoryDir), [`${show.id}.mem`]);
  });

  it("runs commands and passes their exit status through", async () => {
    const uname = await banger(["vm", "exec", "e2e", "--", "uname", "-a"]);
    assert.equal(uname.code, 0, uname.stderr);
    assert.match(uname.stdout, /^Linux e2e 6\.1\.\S+-cloud-amd64 .* x86_64/);
    const three = await banger(["vm", "exec", "e2e", "--", "sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert.equal(three.code, 3);
    assert.equal(three.stderr, "to-stderr\n");
    const killed = await banger(["vm", "exec", "e2e", "--", "sh", "-c", "kill -TERM $$"]);
    assert.equal(killed.code, 128 + 15);
  });

  it("streams stdin in and files out byte for byte", async () => {
    const payload = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251;
    const put = await runBanger(["vm", "exec", "e2e", "--user", "root", "--", "sh", "-c", "cat > /root/blob && wc -c < /root/blob"], { home, env, input: payload });
    assert.equal(put.stdout.trim(), String(payload.length));
    const get = await banger(["vm", "exec", "e2e", "--user", "root", "--", "md5sum", "/root/blob"]);
    assert.equal(get.stdout.split(" ")[0], createHash("md5").update(payload).digest("hex"));
  });

  it("shows stats in human units, and the raw sample with --json", async () => {
    const human = await banger(["vm", "stats", "e2e"]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^cpu: +\d+% of 1 CPU$/m);
    assert.match(human.stdout, /^memory: +\d+(\.\d)? MiB used of 3\d\d MiB \(\d+%\)$/m, "384M VM: its kernel keeps a little");
    assert.match(human.stdout, /^disk: +.* used of .*iB \(\d+%\), .* free on \/$/m);
    assert.match(human.stdout, /^uptime: +\d+(s|m \d+s)$/m);
    const raw = JSON.parse((await banger(["vm", "stats", "e2e", "--json"])).stdout);
    assert.equal(typeof raw.guest.memory.total, "number");
    assert.equal(typeof raw.guest.cpu.idle, "number", "cumulative jiffies, as the daemon answers");
  });

  it("gives a PTY that echoes and knows its size", async () => {
    // `script` gives the CLI a real terminal on its stdin, as a user's shell would.
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawnOnPty(["vm", "exec", "-t", "e2e", "--", "sh", "-c", 'stty size; read line; echo "got:$line"'], { env: { ...env, BANGER_HOME: home }, before: "stty cols 91 rows 27" });
      let text = "";
      child.stdout.on("data", (b) => {
        text += b;
        if (text.includes("27 91") && !text.includes("typed")) child.stdin.write("typed-in-pty\r");
      });
      child.on("error", reject);
      child.on("close", () => resolve(text));
      setTimeout(() => child.kill(), 30_000).unref();
    });
    assert.match(out, /27 91/);
    assert.match(out, /typed-in-pty/, "the PTY echoes what was typed");
    assert.match(out, /got:typed-in-pty/);
  });

  it("stops, and starts again with its disk intact", async () => {
    await mustRun(banger(["vm", "exec", "e2e", "--user", "root", "--", "sh", "-c", "echo kept > /root/marker; sync"]));
    const stop = await banger(["vm", "stop", "e2e", "--json"]);
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = JSON.parse(stop.stdout);
    assert.equal(stopped.state, "stopped");
    const running = await banger(["vm", "exec", "e2e", "--", "true"]);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /vm e2e is stopped, not running \(start it: banger vm start e2e\)/);
    // The configured VMM is for new VMs: this one keeps the VMM its record names.
    await mustRun(banger(["config", "set", "vmm", "firecracker"]));
    try {
      assert.equal((await banger(["vm", "start", "e2e"])).code, 0);
      assert.equal(JSON.parse((await banger(["vm", "show", "e2e", "--json"])).stdout).vmm, "qemu");
      if (!which("firecracker")) {
        const refused = await banger(["vm", "create", "--no-start", "--name", "fc", "--image", "busybox"]);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /^banger: vmm is firecracker \(set in the config file\) but firecracker is not on PATH \(.*, or `banger config unset vmm` to let banger pick\)$/m);
        assert.deepEqual(
          (JSON.parse((await banger(["vm", "ls", "--json"])).stdout) as { name: string }[]).map((v) => v.name),
          ["e2e"],
          "nothing left of the refused VM",
        );
      }
    } finally {
      await mustRun(banger(["config", "set", "vmm", "qemu"]));
    }
    const marker = await banger(["vm", "exec", "e2e", "--user", "root", "--", "cat", "/root/marker"]);
    assert.equal(marker.stdout, "kept\n");
  });

  it("keeps control of a running VM across a daemon killed with SIGKILL", async () => {
    const before = JSON.parse((await banger(["vm", "show", "e2e", "--json"])).stdout);
    // The daemon dies while the agent floods output: the serial port may hold the old
    // connection's bytes, and the next daemon's handshake must skip them.
    const flood = banger(["vm", "exec", "e2e", "--", "sh", "-c", "while true; do echo spam; done"]);
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(daemonPid(), "SIGKILL");
    assert.notEqual((await flood).code, 0, "the flooding exec ends with its daemon");
    const after = JSON.parse((await banger(["vm", "show", "e2e", "--json"])).stdout);
    assert.equal(after.state, "running");
    assert.equal(after.pid, before.pid, "the same VMM process was adopted");
    const echo = await banger(["vm", "exec", "e2e", "--", "echo", "still here"]);
    assert.equal(echo.stdout, "still here\n");
  });

  it("refuses rm of a running VM, and rm -f leaves nothing behind", async () => {
    const { pid } = JSON.parse((await banger(["vm", "show", "e2e", "--json"])).stdout);
    const refused = await banger(["vm", "rm", "e2e"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /vm e2e is running/);
    assert.equal((await banger(["vm", "rm", "-f", "e2e"])).code, 0);
    assert.equal(isAlive(pid), false, "the VMM is gone");
    assert.deepEqual(readdirSync(join(home, "vms")), []);
    assert.equal(existsSync(join(home, "run", "vms")) ? readdirSync(join(home, "run", "vms")).length : 0, 0);
    // Its guest RAM file on the tmpfs too (QEMU VMs keep it there for snapshots).
    const memoryDir = resolvePaths({ BANGER_HOME: home }).memoryDir;
    assert.deepEqual(existsSync(memoryDir) ? readdirSync(memoryDir) : [], []);
    assert.deepEqual(JSON.parse((await banger(["vm", "ls", "--json"])).stdout), []);
  });
});

describe("a kernel and an image from an older banger boot with the daemon's agent", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env });

  before(async () => {
    let kernel: string;
    let image: string;
    ({ env, kernel, image } = await prepareBootableHome(home));
    // Stand-ins for agents that no longer work with this daemon: a /init appended to the
    // kernel's initramfs (the kernel unpacks archives in order, so it wins) and the image's
    // /sbin/banger-agent. Neither can run (no shell in the initramfs, a script that fails).
    const stale = join(home, "stale");
    mkdirSync(stale);
    writeFileSync(join(stale, "init"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
    await runChecked(["sh", "-c", 'cd "$1" && echo init | cpio -o -H newc --quiet >> "$2"', "sh", stale, join(home, "kernels", kernel, "initrd.img")]);
    const rootfs = join(home, "images", image, "rootfs.ext4");
    await runChecked(["debugfs", "-w", "-R", "rm /sbin/banger-agent", rootfs]);
    await runChecked(["debugfs", "-w", "-R", `write ${join(stale, "init")} /sbin/banger-agent`, rootfs]);
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "old"], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("boots and runs a command", async () => {
    const r = await banger(["vm", "create", "--name", "old", "--image", "busybox"]);
    assert.equal(r.code, 0, r.stderr);
    const echo = await banger(["vm", "exec", "old", "--", "echo", "served"]);
    assert.equal(echo.stdout, "served\n", echo.stderr);
  });
});
