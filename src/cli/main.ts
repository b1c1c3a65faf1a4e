// banger: the CLI. Parses the command line, calls bangerd over its socket, prints results.
// Exit status: 0 success, 1 a failed operation, 2 bad usage; a guest command: its own status,
// 127 when it does not exist, 126 when it cannot run (as a shell).
import { Command, CommanderError } from "commander";
import { BangerError, errorLine, exitStatusOf } from "../util/errors.ts";
import { versionLine } from "../util/buildinfo.ts";
import { inert } from "../util/text.ts";
import { cancelledForReader, watchOutputs } from "./output.ts";
import { registerConfig } from "./config.ts";
import { registerDaemon } from "./daemon.ts";
import { registerDoctor } from "./doctor.ts";
import { registerImage } from "./image.ts";
import { registerInternal } from "./internal.ts";
import { registerKernel } from "./kernel.ts";
import { registerNet } from "./net.ts";
import { registerVm } from "./vm.ts";
import { registerSession } from "./session.ts";
import { registerWeb } from "./web.ts";

const debug = process.argv.includes("--debug");

function buildProgram(): Command {
  const program = new Command("banger")
    .description("disposable Linux microVMs for coding agents and untrusted code")
    .option("--debug", "show stack traces on errors")
    .version(versionLine("banger"), "-V, --version", "print version, git commit and build date")
    .showSuggestionAfterError(true);
  registerVm(program);
  registerSession(program);
  registerImage(program);
  registerKernel(program);
  registerDoctor(program);
  registerConfig(program);
  registerNet(program);
  registerWeb(program);
  registerDaemon(program);
  registerInternal(program);
  applyToAll(program, (cmd) => {
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (str, write) => write(`banger: ${str.replace(/^error: /, "")}`) });
    cmd.showHelpAfterError(`usage: ${fullName(cmd)} ${cmd.usage()}  (see --help)`);
  });
  return program;
}

function applyToAll(cmd: Command, fn: (cmd: Command) => void): void {
  fn(cmd);
  for (const sub of cmd.commands) applyToAll(sub, fn);
}

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

async function main(): Promise<void> {
  watchOutputs();
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0; parsing errors were already printed.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    // The reader went away and the call streaming to it was cancelled: as quiet as `ls | true`.
    if (cancelledForReader(err)) return void (process.exitCode ??= 0);
    // Errors can quote a guest or an image (a console tail, an agent's message): made inert, lines kept.
    process.stderr.write(`banger: ${inert(errorLine(err), { newlines: true, max: 8192 })}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitStatusOf(err);
    if (!(err instanceof BangerError) && !debug) process.stderr.write("banger: (run with --debug for details)\n");
  }
}

await main();
