// bangerd: the daemon's entry point. Parses flags, then either runs in the foreground
// (systemd, or when the CLI starts it) or starts itself in the background and exits.
import { Command, CommanderError } from "commander";
import { resolvePaths } from "../config/index.ts";
import { errorLine } from "../util/errors.ts";
import { versionLine } from "../util/buildinfo.ts";
import { runDaemon } from "./server.ts";
import { startDaemon } from "../launch/index.ts";

const program = new Command("bangerd")
  .description("banger's daemon: owns VMs, images, kernels and all state under one root ($BANGER_HOME or /var/lib/banger)")
  .option("--foreground", "run in the foreground (for systemd); logs also go to stderr")
  .option("--quiet", "with --foreground: log to the log file only")
  .option("--web", "also serve the dashboard on 127.0.0.1 (like web.enabled in the config)")
  .option("--api", "also serve the E2B-compatible API on 127.0.0.1 (like api.enabled in the config)")
  .version(versionLine("bangerd"), "-V, --version")
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

try {
  program.parse();
} catch (err) {
  const code = err instanceof CommanderError ? err.exitCode : 1;
  process.exit(code === 0 ? 0 : 2);
}
const opts = program.opts<{ foreground?: boolean; quiet?: boolean; web?: boolean; api?: boolean }>();
// A daemon started in the background inherits them.
if (opts.web) process.env.BANGER_WEB = "1";
if (opts.api) process.env.BANGER_API = "1";
const paths = resolvePaths();

if (opts.foreground) {
  runDaemon(paths, { logToStderr: !opts.quiet }).catch((err) => {
    process.stderr.write(`bangerd: ${errorLine(err)}\n`);
    process.exit(1);
  });
} else {
  try {
    const { client, pid, spawned } = await startDaemon(paths, 15000);
    client.close();
    if (pid !== spawned) process.stderr.write(`bangerd: already running (pid ${pid})\n`);
    process.stdout.write(`bangerd running (pid ${pid}) on ${paths.socket}\n`);
  } catch (err) {
    process.stderr.write(`bangerd: ${errorLine(err)}\n`);
    process.exit(1);
  }
}
