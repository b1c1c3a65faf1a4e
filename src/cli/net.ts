// Networking commands: `vm ports`, `vm forward`, `vm ssh-proxy`, `ssh-config`, `dns setup`
// and `net status`, plus the --net/--net-peer options of `vm create` (and `vm run`).
//
// For other commands (`vm run -p`): `parseForwardSpec(text)` reads "[HOST:]PORT[:GUESTPORT]"
// and `startForward(client, vm, spec)` listens on the host loopback and pipes each accepted
// connection to the guest port over the agent channel (one `vm.tcp` call per connection, so
// it works with `--net none`); `await fw.close()` stops it.
import { realpathSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { homedir } from "node:os";
import { Option, type Command } from "commander";
import { resolvePaths, sshPaths } from "../config/index.ts";
import type { Client } from "../api/index.ts";
import type { Call } from "../rpc/index.ts";
import { BangerError, ErrorCode, errorLine, invalidArgument } from "../util/errors.ts";
import { isLoopbackHost } from "../util/loopback.ts";
import { validateName } from "../util/names.ts";
import { inert } from "../util/text.ts";
import { callDaemon, withClient } from "./daemon-client.ts";
import { printFields, printJson, printTable } from "./output.ts";
import { Uploader, streamEvents } from "./streams.ts";

const vmName = (v: string) => validateName("vm", v);
const NET_POLICIES = ["full", "public", "none"];

// --- --net / --net-peer ---

/** Adds `--net full|public|none` and `--net-peer` to a command (vm create, vm run). */
export function addNetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--net <policy>", "egress: full (default), public (internet only: no private ranges, metadata or host services) or none (no NIC)").choices(NET_POLICIES))
    .option("--net-peer", "let this VM reach (and be reached by) other VMs started with --net-peer");
}

/** The vm.create parameters for those options. */
export function netParams(opts: { net?: string; netPeer?: boolean }): { net?: string; netPeer?: boolean } {
  return { net: opts.net, netPeer: opts.netPeer };
}

// --- port forwarding ---

export interface ForwardSpec {
  /** Host listen address (loopback only). */
  host: string;
  /** Host port; 0 picks a free one (see Forward.port). */
  port: number;
  guestPort: number;
}

function parsePort(text: string, what: string, allowZero: boolean): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n > 65535 || n < (allowZero ? 0 : 1)) throw invalidArgument(`${what}: not a port number: ${JSON.stringify(text)}`);
  return n;
}

/** "[HOST:]PORT[:GUESTPORT]": 8080, 8080:80, 127.0.0.2:8080, 127.0.0.1:8080:80, [::1]:8080:80. */
export function parseForwardSpec(text: string): ForwardSpec {
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text);
  const parts = bracketed ? [bracketed[1]!, ...bracketed[2]!.split(":")] : text.split(":");
  let host = "127.0.0.1";
  if (parts.length === 3 || (parts.length === 2 && !/^\d+$/.test(parts[0]!)) || bracketed) host = parts.shift()!;
  if (parts.length < 1 || parts.length > 2 || parts.some((p) => p === "")) {
    throw invalidArgument(`cannot read forward ${JSON.stringify(text)}`, "use [HOST:]PORT[:GUESTPORT], e.g. 8080 or 8080:80");
  }
  if (!isLoopbackHost(host)) throw invalidArgument(`forward ${JSON.stringify(text)}: ${host} is not a loopback address`, "forwards listen on the host's loopback only (127.0.0.1 or ::1)");
  const port = parsePort(parts[0]!, "host port", true);
  const guestPort = parts[1] === undefined ? port : parsePort(parts[1], "guest port", false);
  if (guestPort === 0) throw invalidArgument("host port 0 needs an explicit guest port, e.g. 0:80");
  return { host, port, guestPort };
}

export interface Forward {
  vm: string;
  host: string;
  /** The port actually listened on (differs from the spec's when it asked for 0). */
  port: number;
  guestPort: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Listens on spec.host:spec.port and pipes each connection to guestPort in the VM. Errors
 * of one connection (e.g. nothing listens in the guest) close that connection and go to
 * `onError` (default: a line on stderr); the forward keeps serving.
 */
export async function startForward(client: Client, vm: string, spec: ForwardSpec, opts: { onError?: (err: unknown) => void } = {}): Promise<Forward> {
  const onError = opts.onError ?? ((err: unknown) => process.stderr.write(`banger: forward to ${vm}:${spec.guestPort}: ${inert(errorLine(err), { max: 1024 })}\n`));
  const open = new Set<{ sock: Socket; abort: AbortController }>();
  let count = 0;
  // Half-open: a client that finished sending still gets the guest's answer.
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    count++;
    const entry = { sock, abort: new AbortController() };
    open.add(entry);
    sock.once("close", () => {
      open.delete(entry);
      entry.abort.abort();
    });
    pipeConnection(client, vm, spec.guestPort, sock, entry.abort.signal).catch((err: unknown) => {
      if (!entry.abort.signal.aborted) onError(err);
      sock.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new BangerError(ErrorCode.Unavailable, `cannot listen on ${spec.host}:${spec.port}: ${err.code ?? err.message}`, "pick another host port, e.g. 0 for any free one")),
    );
    server.listen(spec.port, spec.host, () => resolve());
  });
  server.on("error", () => undefined);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : spec.port;
  return {
    vm,
    host: spec.host,
    port,
    guestPort: spec.guestPort,
    get connections() {
      return count;
    },
    close: async () => {
      for (const { sock, abort } of open) {
        abort.abort();
        sock.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One connection: a `vm.tcp` call carrying bytes both ways; resolves when the guest side closes. */
async function pipeConnection(client: Client, vm: string, guestPort: number, sock: Socket, signal: AbortSignal): Promise<void> {
  sock.pause();
  sock.on("error", () => undefined);
  let uploader: Uploader | undefined;
  const call: Call<unknown> = client.start("vm.tcp", { name: vm, port: guestPort }, { signal, onEvent: (e) => handler(e) });
  uploader = new Uploader(call, sock);
  const handler = streamEvents({ 1: sock, 2: sock }, uploader, () => uploader?.start());
  try {
    await call.result;
    sock.end();
  } finally {
    uploader.stop();
  }
}

/** Resolves at the first SIGINT or SIGTERM (how a foreground forward ends). */
function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
}

// --- ssh ---

/** "name.vm" (what ssh passes as %h) or a bare VM name. */
export function vmNameFromHost(host: string): string {
  return validateName("vm", host.replace(/\.vm\.?$/i, ""));
}

/** The ProxyCommand that reaches a VM's sshd over the agent channel, for this CLI and root. */
function proxyCommand(): string {
  const self = realpathSync(process.argv[1] ?? "banger");
  const home = process.env.BANGER_HOME;
  for (const part of [self, home ?? ""]) {
    if (/[\s"'\\$`]/.test(part)) throw invalidArgument(`cannot put ${JSON.stringify(part)} in an ssh ProxyCommand (spaces or quotes)`, "install banger and its state root under paths without spaces");
  }
  return `${home ? `env BANGER_HOME=${home} ` : ""}${self} vm ssh-proxy %h`;
}

/**
 * Bridges this process's stdin/stdout to the VM's ssh server (`vm.ssh`: started on demand) or,
 * with a port, to whatever listens there (`vm.tcp`). ssh's ProxyCommand end.
 */
async function proxyStdio(vm: string, port: number | undefined): Promise<void> {
  await withClient(async (client) => {
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once("SIGTERM", onSignal);
    let uploader: Uploader | undefined;
    const opts = { signal: abort.signal, onEvent: (e: unknown) => handler(e) };
    const call = port === undefined ? client.start("vm.ssh", { name: vm }, opts) : client.start("vm.tcp", { name: vm, port }, opts);
    uploader = new Uploader(call, process.stdin);
    const handler = streamEvents({ 1: process.stdout, 2: process.stderr }, uploader, () => uploader?.start());
    try {
      await call.result;
    } finally {
      process.off("SIGTERM", onSignal);
      uploader.stop();
      process.stdin.destroy();
    }
  });
}

// --- commands ---

/** `vm ports`, `vm forward`, `vm ssh-proxy` (called by registerVm). */
export function registerVmNet(vm: Command): void {
  vm.command("ports")
    .description("list listening TCP sockets in a running VM, with their processes")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const ports = await callDaemon("vm.ports", { name });
      if (opts.json) return printJson(ports);
      if (ports.length === 0) {
        process.stdout.write(`nothing listens in ${name}\n`);
        return;
      }
      printTable(
        ["PROTO", "ADDRESS", "PORT", "PID", "COMMAND"],
        ports.map((p) => [p.proto, p.address, p.port, p.pid, p.command]),
      );
    });

  vm.command("forward")
    .description("forward host loopback ports into a running VM over the agent channel (works with --net none); Ctrl-C stops")
    .argument("<name>", "VM name", vmName)
    .argument("<ports...>", "[HOST:]PORT[:GUESTPORT], e.g. 8080, 8080:80, 127.0.0.1:0:80 (0: any free host port)")
    .action(async (name: string, specs: string[]) => {
      const parsed = specs.map(parseForwardSpec);
      const vmInfo = await callDaemon("vm.show", { name });
      if (vmInfo.state !== "running") throw new BangerError(ErrorCode.InUse, `vm ${name} is ${vmInfo.state}, not running`, `start it: banger vm start ${name}`);
      await withClient(async (client) => {
        const forwards: Forward[] = [];
        try {
          for (const spec of parsed) {
            const fw = await startForward(client, name, spec);
            forwards.push(fw);
            process.stdout.write(`forwarding ${fw.host}:${fw.port} -> ${name}:${fw.guestPort}\n`);
          }
          process.stderr.write("Ctrl-C to stop\n");
          await untilInterrupted();
        } finally {
          await Promise.all(forwards.map((f) => f.close()));
        }
      });
    });

  vm.command("ssh-proxy")
    .description("pipe stdin/stdout to a VM's ssh server over the agent channel, starting the image's sshd or dropbear on demand (ssh's ProxyCommand; see `banger ssh-config`)")
    .argument("<host>", "NAME.vm or NAME")
    .option("--port <port>", "connect to this guest port instead (nothing is started)", (v: string) => parsePort(v, "--port", false))
    .action((host: string, opts: { port?: number }) => proxyStdio(vmNameFromHost(host), opts.port));
}

/** What `ssh.authorize` answers: VMs ready for `ssh NAME.vm`, VMs whose image has no ssh server, failures. */
/** `ssh-config`, `dns setup`, `net status` (top level). */
export function registerNet(program: Command): void {
  program
    .command("ssh-config")
    .description("write an ssh include file so `ssh NAME.vm` works, install your public key in VMs, print the line for ~/.ssh/config")
    .option("--user <user>", "user to log in as", "root")
    .option("--direct", "connect over the VM network (needs `banger dns setup` and sshd listening on the guest's address) instead of the agent channel")
    .option("--json", "print JSON")
    .action(async (opts: { user: string; direct?: boolean; json?: boolean }) => {
      if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(opts.user)) throw invalidArgument(`--user: not a user name: ${JSON.stringify(opts.user)}`);
      const { ensureSshKey, writeSshConfig } = await import("../net/index.ts");
      const files = sshPaths(resolvePaths());
      const key = await ensureSshKey(files.key, { userSshDir: `${homedir()}/.ssh` });
      const include = await writeSshConfig({
        includePath: files.config,
        keyPath: key.privateKeyPath,
        knownHostsPath: files.knownHosts,
        user: opts.user,
        ...(opts.direct ? {} : { proxyCommand: proxyCommand() }),
      });
      const res = await callDaemon("ssh.authorize", { publicKey: key.publicKey });
      if (opts.json) return printJson({ config: files.config, include, key: key.privateKeyPath, managedKey: key.managed, ...res });
      process.stdout.write(`wrote ${files.config}\nadd this line at the top of ~/.ssh/config:\n  ${include}\n`);
      process.stdout.write(`key: ${key.publicKeyPath}${key.managed ? " (banger's own)" : ""}; installed in ${res.installed.length} running VM(s) with an ssh server, new VMs get it at boot\n`);
      for (const n of res.noServer) process.stdout.write(`${n.vm}: no ssh server in image ${n.image}; use \`banger vm shell ${n.vm}\`\n`);
      for (const f of res.failed) process.stderr.write(`banger: key not installed in ${f.vm}: ${inert(f.error, { max: 1024 })}\n`);
    });

  program
    .command("dns")
    .description("the .vm DNS names")
    .command("setup")
    .description("make the host resolve NAME.vm through banger's DNS server (systemd-resolved), or print what to configure")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const plan = await callDaemon("net.dns.setup");
      if (opts.json) return printJson(plan);
      process.stdout.write(`${plan.text}\n`);
    });

  program
    .command("net")
    .description("the VM network")
    .command("status")
    .description("bridge, subnet, gateway, DNS and idle taps")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const s = await callDaemon("net.status");
      if (opts.json) return printJson(s);
      printFields(Object.entries(s).map(([k, v]) => [k, Array.isArray(v) ? v.join(" ") : v]));
    });
}
