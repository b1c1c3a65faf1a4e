// Test support: the real agent as PID 1 of a QEMU microvm under TCG (no VMM driver, no
// daemon): Debian's cloud kernel with an initramfs whose /init is the agent (loading virtio
// modules from modules.list), switch_root to an ext4 root disk with busybox and the agent.
// Optional: a NIC on a tap inside a network namespace, a QMP socket, and `-incoming` to start
// a VM from a migration stream (a copy of another VM, as a snapshot's child is).
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer as collect } from "node:stream/consumers";
import { buildAgent, connectAgent, type AgentClient } from "../../src/guest/index.ts";
import { runChecked, which } from "../../src/util/exec.ts";
import { AGENT_PORT_NAME, dialUnix } from "../../src/vmm/index.ts";
import type { TestKernel } from "./vm.ts";

/** Loaded in this order by the agent (dependencies first). */
const MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback", "failover", "net_failover", "virtio_net"];
/** busybox applets the root disk links (commands tests run in the guest). */
const APPLETS = ["sh", "cat", "echo", "uname", "stty", "mount", "ls", "sleep", "hostname", "date", "head", "od", "ip", "sed", "grep", "tr", "pidof"];

/** Why these VMs cannot run here, or undefined. */
export function agentVmUnavailable(): string | undefined {
  if (process.arch !== "x64") return "needs an x86_64 host";
  for (const tool of ["qemu-system-x86_64", "mkfs.ext4", "cpio", "busybox", "dpkg-deb"]) if (!which(tool)) return `${tool} not installed`;
  return undefined;
}

export interface AgentVmFiles {
  kernel: TestKernel;
  /** The initramfs (the agent as /init) and the root disk image to copy per VM. */
  initrd: string;
  rootImage: string;
  /** The agent binary (also /sbin/banger-agent in the root). */
  agent: string;
}

async function findModule(root: string, name: string): Promise<string> {
  const res = await runChecked(["find", root, "-name", `${name}.ko*`]);
  const path = res.stdout.trim().split("\n")[0];
  if (!path) throw new Error(`module ${name} not in ${root}`);
  return path;
}

/** Builds the initramfs and root image under `dir`; `withInit` adds busybox init as /sbin/init and poweroff. */
export async function buildAgentVmFiles(dir: string, kernel: TestKernel, opts: { withInit?: boolean } = {}): Promise<AgentVmFiles> {
  const agent = await buildAgent("amd64");
  const initrd = join(dir, "initrd");
  await mkdir(join(initrd, "lib/banger/modules"), { recursive: true });
  await copyFile(agent, join(initrd, "init"));
  for (const m of MODULES) await copyFile(await findModule(kernel.modulesDir, m), join(initrd, "lib/banger/modules", `${m}.ko`));
  await writeFile(join(initrd, "lib/banger/modules.list"), `# loaded in order\n${MODULES.join("\n")}\n`);
  await runChecked(["sh", "-c", 'cd "$1" && find . | cpio -o -H newc --quiet > "$2"', "sh", initrd, join(dir, "initrd.cpio")]);

  const root = join(dir, "root");
  for (const d of ["bin", "sbin", "etc", "root", "proc", "sys", "dev", "run", "tmp", "work"]) await mkdir(join(root, d), { recursive: true });
  await copyFile(which("busybox")!, join(root, "bin/busybox"));
  for (const a of APPLETS) await symlink("busybox", join(root, "bin", a));
  await copyFile(agent, join(root, "sbin/banger-agent"));
  await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await writeFile(join(root, "etc/group"), "root:x:0:\n");
  if (opts.withInit) {
    await symlink("../bin/busybox", join(root, "sbin/init"));
    await symlink("busybox", join(root, "bin/poweroff"));
  }
  const rootImage = join(dir, "root.ext4");
  await runChecked(["mkfs.ext4", "-q", "-d", root, rootImage, "64M"]);
  return { kernel, initrd: join(dir, "initrd.cpio"), rootImage, agent };
}

export interface AgentVmOptions {
  /** Names the VM's disk, agent socket and QMP socket under `dir`. */
  name: string;
  dir: string;
  /** Appended to the kernel command line (after banger.hostname=bootcheck). */
  cmdline?: string;
  /** Use this disk as is (a child of a migration uses a copy of its parent's); default a fresh copy of the root image. */
  disk?: string;
  /** A NIC on this tap, which exists in `netns` (QEMU then runs inside that namespace). */
  nic?: { netns: string; tap: string; mac: string };
  /** Start from a migration stream instead of booting: QEMU's -incoming URI (e.g. "exec:cat FILE"). */
  incoming?: string;
}

/** One QEMU process running the agent. */
export class AgentVm {
  console = "";
  constructor(
    readonly qemu: ChildProcess,
    /** The agent's virtio-serial port (a Unix socket) and QEMU's QMP socket. */
    readonly sock: string,
    readonly qmp: string,
  ) {
    qemu.stdout!.on("data", (d: Buffer) => (this.console += d.toString()));
    qemu.stderr!.on("data", (d: Buffer) => (this.console += d.toString()));
  }

  /** What a failure report needs first: the agent's own lines, then the console's end. */
  consoleSummary(): string {
    const lines = this.console.split("\n");
    const agent = lines.filter((l) => l.startsWith("banger-agent")).slice(-10);
    return `agent log:\n${agent.join("\n") || "(none)"}\nconsole tail:\n${lines.slice(-12).join("\n")}`;
  }

  /** A new agent connection over the serial port (the guest may still be booting). */
  connect(): Promise<AgentClient> {
    return dialUnix(this.sock, { timeoutMs: 20_000 })
      .then((s) => connectAgent(s, { serial: true, timeoutMs: 60_000 }))
      .catch((err: Error) => {
        throw new Error(`${err.message}\n${this.consoleSummary()}`);
      });
  }

  async kill(): Promise<void> {
    if (this.qemu.exitCode !== null || this.qemu.signalCode !== null) return;
    this.qemu.kill("SIGKILL");
    await once(this.qemu, "exit");
  }
}

/** Starts QEMU on the files; resolves once it runs (the guest boots on; connect() waits for it). */
export async function startAgentVm(files: AgentVmFiles, opts: AgentVmOptions): Promise<AgentVm> {
  const disk = opts.disk ?? join(opts.dir, `${opts.name}.ext4`);
  if (!opts.disk) await copyFile(files.rootImage, disk);
  const sock = join(opts.dir, `${opts.name}.sock`);
  const qmp = join(opts.dir, `${opts.name}.qmp`);
  const argv = [
    "qemu-system-x86_64",
    ...["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-accel", "tcg", "-m", "512", "-smp", "1"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio"],
    ...["-kernel", files.kernel.vmlinuz, "-initrd", files.initrd],
    // tsc_early_khz: TCG's PIT-based TSC calibration can hang on a loaded host.
    "-append",
    `console=ttyS0 rdinit=/init panic=-1 tsc_early_khz=2600000 banger.root=/dev/vda banger.hostname=bootcheck ${opts.cmdline ?? ""}`.trim(),
    ...["-drive", `id=root,file=${disk},format=raw,if=none`, "-device", "virtio-blk-device,drive=root"],
    ...["-device", "virtio-serial-device", "-chardev", `socket,id=agent,path=${sock},server=on,wait=off`, "-device", `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`],
    ...["-qmp", `unix:${qmp},server=on,wait=off`],
    ...(opts.nic ? ["-netdev", `tap,id=net0,ifname=${opts.nic.tap},script=no,downscript=no`, "-device", `virtio-net-device,netdev=net0,mac=${opts.nic.mac}`] : []),
    ...(opts.incoming ? ["-incoming", opts.incoming] : []),
  ];
  const cmd = opts.nic ? ["ip", "netns", "exec", opts.nic.netns, ...argv] : argv;
  const qemu = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  return new AgentVm(qemu, sock, qmp);
}

/** Runs a shell script in the guest; resolves with its stdout (it must exit 0). */
export async function guestSh(client: AgentClient, script: string): Promise<string> {
  const h = await client.exec({ argv: ["sh", "-c", script] });
  const [out, err] = await Promise.all([collect(h.stdout), collect(h.stderr)]);
  const status = await h.wait();
  if (!("exitCode" in status) || status.exitCode !== 0) throw new Error(`guest: ${script}: ${JSON.stringify(status)}: ${err.toString()}`);
  return out.toString();
}
