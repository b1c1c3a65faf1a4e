// `banger daemon status|stop|logs|start`.
import { createReadStream, existsSync, readFileSync, statSync, watch } from "node:fs";
import type { Command } from "commander";
import { resolvePaths } from "../config/index.ts";
import type { Methods } from "../api/index.ts";
import { RpcClient } from "../rpc/index.ts";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { connectOrStart, waitSocketGone } from "../launch/index.ts";
import { callDaemon } from "./daemon-client.ts";
import { printFields, printJson, readerGone } from "./output.ts";

export function registerDaemon(program: Command): void {
  const daemon = program.command("daemon").description("control bangerd, the daemon that owns all state");

  daemon
    .command("status")
    .description("show whether bangerd is running for this root, and its details")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const paths = resolvePaths();
      const client = await RpcClient.connect<Methods>(paths.socket).catch(() => undefined);
      if (!client) {
        if (opts.json) printJson({ running: false, root: paths.root, socket: paths.socket });
        else process.stdout.write(`bangerd is not running for ${paths.root}\n`);
        process.exitCode = 1;
        return;
      }
      const status = await client.call("daemon.status").finally(() => client.close());
      if (opts.json) return printJson({ running: true, ...status });
      printFields([
        ["running", `yes (pid ${status.pid})`],
        ["version", `${status.version} (${status.commit})`],
        ["root", status.root],
        ["socket", status.socket],
        ["uptime", `${status.uptimeSeconds}s`],
        ["vms", `${status.vms.running} running, ${status.vms.total} total`],
      ]);
    });

  daemon
    .command("start")
    .description("start bangerd for this root if it is not running (commands do this by themselves)")
    .action(async () => {
      const status = await callDaemon("daemon.status");
      process.stdout.write(`bangerd running (pid ${status.pid}) on ${status.socket}\n`);
    });

  daemon
    .command("stop")
    .description("stop bangerd (running VMs keep running and are re-adopted at the next start)")
    .option("--cleanup-network", "also remove banger's bridge, taps and nftables tables (refused while VMs run with networking)")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean; cleanupNetwork?: boolean }) => {
      const paths = resolvePaths();
      // Cleaning up needs a daemon (it knows the bridge and taps): start one if none runs.
      const client = opts.cleanupNetwork ? await connectOrStart(paths) : await RpcClient.connect<Methods>(paths.socket).catch(() => undefined);
      if (!client) {
        if (opts.json) printJson({ stopped: false, running: false });
        else process.stdout.write("bangerd is not running\n");
        return;
      }
      const res = await client.call("daemon.stop", opts.cleanupNetwork ? { cleanupNetwork: true } : undefined).finally(() => client.close());
      await waitSocketGone(paths.socket, 15000);
      if (opts.json) return printJson({ stopped: true, pid: res.pid, ...(res.network ? { network: res.network } : {}) });
      process.stdout.write(`bangerd (pid ${res.pid}) stopped\n`);
      if (res.network) process.stdout.write(res.network.cleaned ? "network removed: nftables tables, taps, bridge\n" : `network: nothing removed (${res.network.reason})\n`);
    });

  daemon
    .command("logs")
    .description("print bangerd's log (structured JSON lines)")
    .option("-f, --follow", "keep printing new lines")
    .option("-n, --lines <n>", "print only the last N lines", parseCount)
    .action(async (opts: { follow?: boolean; lines?: number }) => {
      const file = resolvePaths().daemonLog;
      if (!existsSync(file)) throw new BangerError(ErrorCode.NotFound, `no log yet at ${file}`, "the daemon has not run for this root");
      const text = readFileSync(file, "utf8");
      const lines = text.split("\n").filter((l) => l !== "");
      const shown = opts.lines === undefined ? lines : lines.slice(-opts.lines);
      if (shown.length > 0) process.stdout.write(`${shown.join("\n")}\n`);
      if (opts.follow) await follow(file, Buffer.byteLength(text));
    });
}

function parseCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw invalidArgument(`--lines takes a whole number, not ${JSON.stringify(v)}`);
  return n;
}

/** Streams what is appended to file from offset on, until Ctrl-C or its reader goes away. */
function follow(file: string, offset: number): Promise<void> {
  return new Promise((resolve) => {
    let pos = offset;
    let reading = false;
    const readMore = () => {
      if (reading) return;
      const size = statSync(file).size;
      if (size < pos) pos = 0; // truncated or rotated
      if (size === pos) return;
      reading = true;
      createReadStream(file, { start: pos, end: size - 1 })
        .on("data", (c) => process.stdout.write(c))
        .on("end", () => {
          pos = size;
          reading = false;
        });
    };
    const watcher = watch(file, readMore);
    const timer = setInterval(readMore, 1000);
    const stop = () => {
      watcher.close();
      clearInterval(timer);
      resolve();
    };
    process.once("SIGINT", stop);
    readerGone.addEventListener("abort", stop, { once: true });
    if (readerGone.aborted) stop();
  });
}
