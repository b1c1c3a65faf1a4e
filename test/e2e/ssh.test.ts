// `ssh NAME.vm` as the README says, with the real OpenSSH client and banger's own ssh config
// (ProxyCommand `banger vm ssh-proxy` over the agent channel; the VM has no NIC): the busybox
// preset's dropbear is started on demand, root and dev log in with the key `ssh-config`
// generated and installed; an image without an ssh server fails with one line naming
// `banger vm shell`, and `ssh-config` says so instead of claiming the key is usable.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon, type CliResult } from "../helpers.ts";

describe("ssh NAME.vm with OpenSSH (busybox preset, real VM under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  const userHome = join(home, "user");
  const sshConfig = join(userHome, "ssh_config");
  let env: NodeJS.ProcessEnv = {};
  // HOME is a scratch one: banger makes its own key (no ~/.ssh key there) and ssh writes nothing real.
  const banger = (args: string[]) => runBanger(args, { home, env: { ...env, HOME: userHome } });
  const ssh = (args: string[]): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      const child = spawn("ssh", ["-F", sshConfig, "-o", "BatchMode=yes", "-o", "ConnectTimeout=60", ...args], {
        env: { ...process.env, ...env, BANGER_HOME: home, HOME: userHome },
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 120_000,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b) => (stdout += b));
      child.stderr.on("data", (b) => (stderr += b));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? 128, stdout, stderr }));
    });

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    mkdirSync(userHome, { recursive: true });
    await mustRun(banger(["vm", "create", "--name", "box", "--image", "busybox", "--memory", "256M"]));
  });
  after(async () => {
    await banger(["vm", "rm", "-f", "box"]).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("ssh-config installs the key in the VM, and `ssh -F` runs commands there as root and dev", async () => {
    const cfg = JSON.parse((await mustRun(banger(["ssh-config", "--json"]))).stdout);
    assert.equal(cfg.managedKey, true);
    writeFileSync(sshConfig, `${cfg.include}\n`);

    // Three at once while nothing listens yet: they share one start of the server.
    const firsts = await Promise.all([1, 2, 3].map((n) => ssh(["box.vm", `echo ssh-works ${n}; hostname; id -u`])));
    for (const [i, r] of firsts.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `ssh-works ${i + 1}\nbox\n0\n`);
    }
    assert.deepEqual([cfg.installed, cfg.noServer], [["box"], []], "ssh-config counted it as ready");
    const dev = await ssh(["-l", "dev", "box.vm", "id -un; pwd"]);
    assert.equal(dev.code, 0, dev.stderr);
    assert.equal(dev.stdout, "dev\n/home/dev\n");
    // Started once, on demand, as a session the user can see; listening on the guest's loopback only.
    const sessions = JSON.parse((await mustRun(banger(["session", "ls", "box", "--json"]))).stdout) as { name: string; state: string }[];
    assert.deepEqual(
      sessions.map((s) => [s.name, s.state]),
      [["sshd", "running"]],
    );
    const ports = JSON.parse((await mustRun(banger(["vm", "ports", "box", "--json"]))).stdout) as { port: number; address: string }[];
    assert.deepEqual(
      ports.filter((p) => p.port === 22).map((p) => p.address),
      ["127.0.0.1"],
    );
    assert.match(readFileSync(join(home, "ssh", "known_hosts"), "utf8"), /^box\.vm /m, "the host key was accepted on first use");
  });

  it("without an ssh server in the image: ssh fails with one line naming `vm shell`; ssh-config says no ssh server", async () => {
    await mustRun(banger(["session", "rm", "box", "sshd", "--force"]));
    await mustRun(banger(["vm", "exec", "box", "--user", "root", "--", "rm", "/usr/sbin/dropbear"]));

    const res = await ssh(["box.vm", "echo unreachable"]);
    assert.equal(res.code, 255);
    assert.equal(res.stdout, "");
    const ours = res.stderr.split("\n").filter((l) => l.startsWith("banger:"));
    assert.deepEqual(ours, ["banger: box has no ssh server (image busybox); use `banger vm shell box`"], res.stderr);
    assert.equal(res.stderr.split("\n")[0], ours[0], "it is the first thing the user sees");

    const cfg = await mustRun(banger(["ssh-config"]));
    assert.match(cfg.stdout, /installed in 0 running VM\(s\) with an ssh server/);
    assert.match(cfg.stdout, /^box: no ssh server in image busybox; use `banger vm shell box`$/m);
    const json = JSON.parse((await mustRun(banger(["ssh-config", "--json"]))).stdout);
    assert.deepEqual([json.installed, json.noServer], [[], [{ vm: "box", image: "busybox" }]]);
  });
});
