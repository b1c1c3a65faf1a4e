// The agent as a real guest init: QEMU microvm under TCG boots Debian's cloud kernel with
// an initramfs whose /init is the agent (loading virtio modules from modules.list), which
// switch_roots to an ext4 root disk (busybox + the agent) and serves the virtio-serial
// port "banger.agent" (test/kits/agent-vm.ts). The kernel is Debian's cloud kernel, fetched
// once into the test cache (test/kits/vm.ts); the test skips only where QEMU or the kernel can't be had.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Duplex, type Readable } from "node:stream";
import { buffer as collect } from "node:stream/consumers";
import { once } from "node:events";
import * as tarStream from "tar-stream";
import { makeTempHome } from "../../test/helpers.ts";
import { ensureTestKernel } from "../../test/kits/vm.ts";
import { agentVmUnavailable, buildAgentVmFiles, startAgentVm, type AgentVm, type AgentVmFiles } from "../../test/kits/agent-vm.ts";
import { connectAgent, type AgentClient } from "./index.ts";

const skip = agentVmUnavailable();

describe("agent as PID 1 in a real VM (QEMU TCG, virtio-serial)", { skip }, () => {
  const { home, cleanup } = makeTempHome();
  let files: AgentVmFiles;
  let noKernel: string | undefined; // why Debian's kernel could not be had (offline mirror)
  let vm: AgentVm | undefined;

  before(async () => {
    const found = await ensureTestKernel();
    if (typeof found === "string") return void (noKernel = found);
    files = await buildAgentVmFiles(home, found, { withInit: true });
  });

  /** Boots a VM on a fresh copy of the root disk; `extra` goes on the kernel command line. */
  async function boot(name: string, extra = ""): Promise<void> {
    await vm?.kill();
    vm = await startAgentVm(files, { name, dir: home, cmdline: extra });
  }

  async function poweredOff(client: AgentClient): Promise<void> {
    await client.shutdown();
    const [code] = await once(vm!.qemu, "exit", { signal: AbortSignal.timeout(30_000) }).catch(() => [`nothing: still running after 30 s`]);
    assert.equal(code, 0, `qemu exited with ${code}\n${vm!.consoleSummary()}`);
  }

  after(async () => {
    await vm?.kill();
    cleanup();
  });

  async function consoleShows(pattern: RegExp, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(vm!.console) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(vm!.console, pattern);
  }

  const connect = (): Promise<AgentClient> => vm!.connect();

  test("boots through the initramfs, serves, survives a reconnect and powers off", async (t) => {
    if (noKernel) return t.skip(noKernel);
    await boot("pid1");
    let client = await connect();
    // The console comes through QEMU's stdout, which may lag the agent's own channel a little.
    await consoleShows(/banger-agent \S+ ready/);
    const health = await client.health();
    assert.equal(health.pid1, true);
    assert.equal(health.hostname, "bootcheck");

    const uname = await client.exec({ argv: ["uname", "-a"] });
    assert.match((await collect(uname.stdout)).toString(), /^Linux bootcheck .*x86_64/);
    assert.deepEqual(await uname.wait(), { exitCode: 0 });
    const fail = await client.exec({ argv: ["sh", "-c", "exit 3"] });
    assert.deepEqual(await fail.wait(), { exitCode: 3 });

    const mounts = await client.exec({ argv: ["cat", "/proc/mounts"] });
    const table = (await collect(mounts.stdout)).toString();
    for (const re of [/^\/dev\/vda \/ ext4/m, /^devpts \/dev\/pts/m, /^tmpfs \/run/m]) assert.match(table, re);

    const tty = await client.exec({ argv: ["sh"], tty: { rows: 33, cols: 77 } });
    let out = "";
    tty.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await tty.write("stty size; exit 0\n");
    assert.deepEqual(await tty.wait(), { exitCode: 0 });
    assert.match(out, /33 77/);

    const pack = tarStream.pack();
    pack.entry({ name: "hello.sh", mode: 0o755 }, "echo hi\n");
    pack.finalize();
    await client.putFiles("/work", pack as unknown as Readable);
    const check = await client.exec({ argv: ["sh", "-c", "ls -l /work/hello.sh && sh /work/hello.sh"] });
    assert.match((await collect(check.stdout)).toString(), /^-rwxr-xr-x .*\nhi\n$/);

    // The vsock listener, reached through the guest kernel's vsock loopback (CID 1): no
    // /dev/vhost-vsock on this host, so a command inside the guest carries the bytes.
    const pipe = await client.exec({ argv: ["/sbin/banger-agent", "dial-vsock", "1", "52"], stdin: true });
    const viaVsock = await connectAgent(Duplex.from({ readable: pipe.stdout, writable: pipe.stdin }), { timeoutMs: 10_000 });
    assert.equal(viaVsock.info.pid1, true);
    assert.equal((await viaVsock.health()).hostname, "bootcheck");
    viaVsock.close();
    pipe.close();

    // A busy connection abandoned mid-output, then a new host connection on the same port.
    const spam = await client.exec({ argv: ["sh", "-c", "while true; do echo spam; done"] });
    spam.stdout.resume();
    await new Promise((r) => setTimeout(r, 300));
    client.close();
    client = await connect();
    assert.equal((await client.health()).hostname, "bootcheck");

    await poweredOff(client);
  });

  test("banger.exec_init hands PID 1 to the image's init and keeps serving beside it", async (t) => {
    if (noKernel) return t.skip(noKernel);
    await boot("withinit", "banger.exec_init=/sbin/init");
    const client = await connect();
    assert.equal(client.info.pid1, false);
    const h = await client.exec({ argv: ["cat", "/proc/1/comm"] });
    assert.equal((await collect(h.stdout)).toString(), "init\n"); // busybox init, not banger-agent
    await poweredOff(client); // via the image's own poweroff (busybox init)
  });
});
