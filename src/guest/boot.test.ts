// The agent as a real guest init: QEMU microvm under TCG boots Debian's cloud kernel with
// an initramfs whose /init is the agent (loading virtio modules from modules.list), which
// switch_roots to an ext4 root disk (busybox + the agent) and serves the virtio-serial
// port "banger.agent". The kernel is Debian's cloud kernel, fetched once into the test
// cache (test/kits/vm.ts); the test skips only where QEMU or the kernel can't be had.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Duplex, type Readable } from "node:stream";
import { buffer as collect } from "node:stream/consumers";
import { once } from "node:events";
import * as tarStream from "tar-stream";
import { makeTempHome } from "../../test/helpers.ts";
import { runChecked, which } from "../util/exec.ts";
import { ensureTestKernel, type TestKernel } from "../../test/kits/vm.ts";
import { buildAgent, connectAgent, type AgentClient } from "./index.ts";
import { AGENT_PORT_NAME, dialUnix } from "../vmm/index.ts";

/** Loaded in this order by the agent (dependencies first). */
const MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback"];

function whyUnavailable(): string | undefined {
  if (process.arch !== "x64") return "needs an x86_64 host";
  for (const tool of ["qemu-system-x86_64", "mkfs.ext4", "cpio", "busybox", "dpkg-deb"]) if (!which(tool)) return `${tool} not installed`;
  return undefined;
}

async function findModule(root: string, name: string): Promise<string> {
  const res = await runChecked(["find", root, "-name", `${name}.ko*`]);
  const path = res.stdout.trim().split("\n")[0];
  if (!path) throw new Error(`module ${name} not in ${root}`);
  return path;
}

const skip = whyUnavailable();

describe("agent as PID 1 in a real VM (QEMU TCG, virtio-serial)", { skip }, () => {
  const { home, cleanup } = makeTempHome();
  let kernel: TestKernel;
  let noKernel: string | undefined; // why Debian's kernel could not be had (offline mirror)
  let sock = "";
  let qemu: ChildProcess | undefined;
  const started: ChildProcess[] = []; // every VM, so a failed test cannot leak one
  let console = "";

  /** What a failure report needs first: the agent's own lines, then the console's end. */
  const consoleSummary = (): string => {
    const lines = console.split("\n");
    const agent = lines.filter((l) => l.startsWith("banger-agent")).slice(-10);
    return `agent log:\n${agent.join("\n") || "(none)"}\nconsole tail:\n${lines.slice(-12).join("\n")}`;
  };

  before(async () => {
    const found = await ensureTestKernel();
    if (typeof found === "string") return void (noKernel = found);
    kernel = found;
    const agent = await buildAgent("amd64");
    const initrd = join(home, "initrd");
    await mkdir(join(initrd, "lib/banger/modules"), { recursive: true });
    await copyFile(agent, join(initrd, "init"));
    for (const m of MODULES) await copyFile(await findModule(kernel.modulesDir, m), join(initrd, "lib/banger/modules", `${m}.ko`));
    await writeFile(join(initrd, "lib/banger/modules.list"), `# loaded in order\n${MODULES.join("\n")}\n`);
    await runChecked(["sh", "-c", 'cd "$1" && find . | cpio -o -H newc --quiet > "$2"', "sh", initrd, join(home, "initrd.cpio")]);

    const root = join(home, "root");
    for (const d of ["bin", "sbin", "etc", "root", "proc", "sys", "dev", "run", "tmp", "work"]) await mkdir(join(root, d), { recursive: true });
    await copyFile(which("busybox")!, join(root, "bin/busybox"));
    for (const a of ["sh", "cat", "echo", "uname", "stty", "mount", "ls", "sleep"]) await symlink("busybox", join(root, "bin", a));
    await copyFile(agent, join(root, "sbin/banger-agent"));
    await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await writeFile(join(root, "etc/group"), "root:x:0:\n");
    await runChecked(["mkfs.ext4", "-q", "-d", root, join(home, "root.ext4"), "64M"]);

    await symlink("../bin/busybox", join(root, "sbin/init"));
    await symlink("busybox", join(root, "bin/poweroff"));
    await runChecked(["mkfs.ext4", "-q", "-d", root, join(home, "root.ext4"), "64M"]);
  });

  /** Boots a VM on a fresh copy of the root disk; `extra` goes on the kernel command line. */
  async function boot(name: string, extra = ""): Promise<void> {
    const disk = join(home, `${name}.ext4`);
    await copyFile(join(home, "root.ext4"), disk);
    sock = join(home, `${name}.sock`);
    console = "";
    await killAll();
    qemu = spawn(
      "qemu-system-x86_64",
      [
        "-M",
        "microvm,x-option-roms=off,isa-serial=on,rtc=on",
        "-accel",
        "tcg",
        "-m",
        "512",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        kernel.vmlinuz,
        "-initrd",
        join(home, "initrd.cpio"),
        // tsc_early_khz: TCG's PIT-based TSC calibration can hang on a loaded host.
        "-append",
        `console=ttyS0 rdinit=/init panic=-1 tsc_early_khz=2600000 banger.root=/dev/vda banger.hostname=bootcheck ${extra}`,
        "-drive",
        `id=root,file=${disk},format=raw,if=none`,
        "-device",
        "virtio-blk-device,drive=root",
        "-device",
        "virtio-serial-device",
        "-chardev",
        `socket,id=agent,path=${sock},server=on,wait=off`,
        "-device",
        `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    started.push(qemu);
    qemu.stdout!.on("data", (d: Buffer) => (console += d.toString()));
    qemu.stderr!.on("data", (d: Buffer) => (console += d.toString()));
  }

  async function poweredOff(client: AgentClient): Promise<void> {
    await client.shutdown();
    const [code] = await once(qemu!, "exit", { signal: AbortSignal.timeout(30_000) }).catch(() => [`nothing: still running after 30 s`]);
    assert.equal(code, 0, `qemu exited with ${code}\n${consoleSummary()}`);
  }

  async function killAll(): Promise<void> {
    for (const vm of started.splice(0)) {
      if (vm.exitCode !== null || vm.signalCode !== null) continue;
      vm.kill("SIGKILL");
      await once(vm, "exit");
    }
  }

  after(async () => {
    await killAll();
    cleanup();
  });

  async function consoleShows(pattern: RegExp, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(console) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(console, pattern);
  }

  const connect = async (): Promise<AgentClient> =>
    connectAgent(await dialUnix(sock, { timeoutMs: 20_000 }), { serial: true, timeoutMs: 60_000 }).catch((err: Error) => {
      throw new Error(`${err.message}\n${consoleSummary()}`);
    });

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
