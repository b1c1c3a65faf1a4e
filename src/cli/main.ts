// banger: the CLI. Parses the command line, calls bangerd over its socket, prints results.
// Exit status: 0 success, 1 a failed operation, 2 bad usage; a guest command: its own status,
// 127 when it does not exist, 126 when it cannot run (as a shell). With --json, a failure is
// printed as JSON on stdout too ({"error": {code, name, message, hint}}), usage errors included.
import { Command, CommanderError } from "commander";
import { BangerError, ErrorCode, errorJson, errorLine, exitStatusOf } from "../util/errors.ts";
import { versionLine } from "../util/buildinfo.ts";
import { inert } from "../util/text.ts";
import { cancelledForReader, jsonRequested, printJson, watchOutputs } from "./output.ts";
import { registerConfig } from "./config.ts";
import { registerDaemon } from "./daemon.ts";
import { registerDoctor } from "./doctor.ts";
import { addExamples } from "./examples.ts";
import { registerImage } from "./image.ts";
import { registerInternal } from "./internal.ts";
import { registerKernel } from "./kernel.ts";
import { registerMcp } from "./mcp.ts";
import { registerNet } from "./net.ts";
import { registerPool } from "./pool.ts";
import { registerVm } from "./vm.ts";
import { registerSession } from "./session.ts";
import { registerSnapshot } from "./snapshot.ts";
import { registerWeb } from "./web.ts";
import { registerApi } from "./api.ts";

const debug = process.argv.includes("--debug");
const json = jsonRequested(process.argv.slice(2));
/** Under --json, what commander would have written on stderr for a usage error: it becomes the JSON error. */
const usageText: string[] = [];

function buildProgram(): Command {
  const program = new Command("banger")
    .description("disposable Linux microVMs for coding agents and untrusted code")
    .option("--debug", "show stack traces on errors")
    .version(versionLine("banger"), "-V, --version", "print version, git commit and build date")
    .showSuggestionAfterError(true);
  registerVm(program);
  registerSession(program);
  registerSnapshot(program);
  registerPool(program);
  registerImage(program);
  registerKernel(program);
  registerDoctor(program);
  registerConfig(program);
  registerNet(program);
  registerWeb(program);
  registerApi(program);
  registerMcp(program);
  registerDaemon(program);
  registerInternal(program);
  addExamples(program);
  applyToAll(program, (cmd) => {
    cmd.exitOverride();
    cmd.configureOutput(
      json ? { outputError: (str) => void usageText.push(str), writeErr: (str) => void usageText.push(str) } : { outputError: (str, write) => write(`banger: ${str.replace(/^error: /, "")}`) },
    );
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
      if (json && err.exitCode !== 0) printJson(errorJson(usageError(err)));
      return;
    }
    // The reader went away and the call streaming to it was cancelled: as quiet as `ls | true`.
    if (cancelledForReader(err)) return void (process.exitCode ??= 0);
    process.exitCode = exitStatusOf(err);
    if (json) {
      printJson(errorJson(err)); // printJson makes it inert
      if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      return;
    }
    // Errors can quote a guest or an image (a console tail, an agent's message): made inert, lines kept.
    process.stderr.write(`banger: ${inert(errorLine(err), { newlines: true, max: 8192 })}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    if (!(err instanceof BangerError) && !debug) process.stderr.write("banger: (run with --debug for details)\n");
  }
}

/** A commander parse error (unknown option, missing argument, ...) as banger's usage error, its usage line as the hint. */
function usageError(err: CommanderError): BangerError {
  const text = usageText.join("");
  const message = err.code === "commander.help" ? "a subcommand is required" : err.message.replace(/^error: /, "");
  const usage = /^usage: .*$/m.exec(text)?.[0];
  return new BangerError(ErrorCode.InvalidArgument, message, usage ?? "see --help");
}

await main();
