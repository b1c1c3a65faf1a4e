// `banger session ...`: detached guest processes that outlive the CLI and the daemon.
// attach wires the terminal to a session (raw mode, resizes) and leaves it running on the
// detach keys; everything else is one daemon call.
import { Option, type Command } from "commander";
import { Transform, type TransformCallback } from "node:stream";
import type { ExitStatus, SessionView } from "../api/index.ts";
import { ErrorCode } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { inert } from "../util/text.ts";
import { exitCodeOf } from "./attach.ts";
import { callDaemon, withClient } from "./daemon-client.ts";
import { age, printJson, printTable, readerGone } from "./output.ts";
import { Uploader, streamEvents } from "./streams.ts";
import { USER_HELP, WORKDIR_HELP, parseEnv } from "./args.ts";

const vmName = (v: string) => validateName("vm", v);
const sessionName = (v: string) => validateName("session", v);

/** The detach sequence: Ctrl-] then d. Ctrl-] twice sends one Ctrl-]. */
export const DETACH_PREFIX = 0x1d;
export const DETACH_KEY = "d".charCodeAt(0);
const DETACH_HELP = "Detach with Ctrl-] then d (the session keeps running); Ctrl-] Ctrl-] sends a literal Ctrl-].";

/** Passes input through, except the detach sequence, which calls onDetach instead. */
export class DetachFilter extends Transform {
  private pending = false;
  constructor(private readonly onDetach: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out: number[] = [];
    for (const b of chunk) {
      if (this.pending) {
        this.pending = false;
        if (b === DETACH_KEY) {
          if (out.length > 0) this.push(Buffer.from(out));
          this.onDetach();
          return cb();
        }
        out.push(DETACH_PREFIX);
        if (b !== DETACH_PREFIX) out.push(b);
      } else if (b === DETACH_PREFIX) this.pending = true;
      else out.push(b);
    }
    if (out.length > 0) this.push(Buffer.from(out));
    cb();
  }
}

function describeExit(exit: ExitStatus | undefined): string {
  if (!exit) return "";
  return "exitCode" in exit ? `exit ${exit.exitCode}` : inert(exit.signal);
}

function describeState(s: SessionView): string {
  const state = s.state === "exited" ? `exited (${s.exit ? describeExit(s.exit) : `exit ${s.exitCode}`})` : s.state;
  return s.live ? state : `${state}, as last seen`;
}

/** Attaches the terminal to a session until it ends (its exit status) or the user detaches (0). */
async function attachTerminal(vm: string, name: string): Promise<number> {
  return withClient(async (client) => {
    const stdin = process.stdin;
    const raw = stdin.isTTY === true;
    const size = () => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
    const filter = new DetachFilter(() => call.input({ t: "detach" }));
    // A reader gone (`| head`) cancels the call: the daemon detaches and the session runs on.
    const call = client.start("session.attach", { vm, name }, { onEvent: (e) => handler(e), signal: readerGone });
    const uploader = new Uploader(call, filter);
    const onResize = () => uploader.send({ t: "resize", ...size() });
    const handler = streamEvents({ 1: process.stdout, 2: process.stderr }, uploader, () => {
      // Said once the daemon has the session, before its scrollback; without a terminal there
      // are no keys to type, and Ctrl-C (a signal here) detaches.
      process.stderr.write(`[attached to session ${name} in ${vm}; detach: ${raw ? "Ctrl-] d" : "Ctrl-C"}]\n`);
      if (raw) {
        stdin.setRawMode(true);
        onResize(); // the session's terminal takes this one's size
      }
      stdin.pipe(filter);
      uploader.start();
    });
    // Without raw mode Ctrl-C is a signal here, not a key for the session: it detaches.
    const onSigint = () => call.input({ t: "detach" });
    const onSigterm = () => call.cancel();
    if (raw) process.stdout.on("resize", onResize);
    process.on("SIGINT", onSigint);
    process.on("SIGTERM", onSigterm);
    try {
      const res = await call.result;
      if (res.detached) {
        process.stderr.write(`${raw ? "\r\n" : ""}[detached from session ${name}; back with: banger session attach ${vm} ${name}]\n`);
        return 0;
      }
      process.stderr.write(`${raw ? "\r\n" : ""}[session ${name} ${describeExit(res.exit) || res.state}]\n`);
      return res.exit ? exitCodeOf(res.exit) : 0;
    } finally {
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigterm);
      process.stdout.off("resize", onResize);
      stdin.unpipe(filter);
      uploader.stop();
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    }
  });
}

/** A subcommand taking <vm> <session>, the shape of most session commands. */
function onSession(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description).argument("<vm>", "VM name", vmName).argument("<session>", "session name", sessionName);
}

export function registerSession(program: Command): void {
  const session = program.command("session").description("detached processes in a VM: they survive the CLI and daemon restarts").addHelpText("after", `\n${DETACH_HELP}`);

  session
    .command("ls")
    .alias("list")
    .description("list sessions (of one VM, or of all)")
    .argument("[vm]", "VM name", vmName)
    .option("--json", "print JSON")
    .action(async (vm: string | undefined, opts: { json?: boolean }) => {
      const list = await callDaemon("session.list", { vm });
      if (opts.json) return printJson(list);
      if (list.length === 0) {
        process.stdout.write("no sessions (start one with `banger session start VM -- CMD`)\n");
        return;
      }
      printTable(
        ["VM", "NAME", "STATE", "PID", "AGE", "COMMAND"],
        list.map((s) => [s.vm, s.name, describeState(s), s.state === "running" ? s.pid : null, age(s.createdAt), s.command]),
      );
    });

  session
    .command("start")
    .description("start a command as a detached session; prints its name")
    .argument("<vm>", "VM name", vmName)
    .argument("<command...>", "the command and its arguments (after --)")
    .option("--name <name>", "session name (default: the command's name and a number)", sessionName)
    .option("--no-tty", "run on pipes instead of a terminal")
    .addOption(new Option("-e, --env <KEY=VALUE...>", "environment variables").default([]))
    .option("-w, --workdir <dir>", WORKDIR_HELP)
    .option("-u, --user <user>", USER_HELP)
    .option("--json", "print JSON")
    .action(async (vm: string, argv: string[], opts: { name?: string; tty: boolean; env: string[]; workdir?: string; user?: string; json?: boolean }) => {
      const res = await callDaemon("session.start", {
        vm,
        name: opts.name,
        argv,
        env: parseEnv(opts.env),
        cwd: opts.workdir,
        user: opts.user,
        ...(opts.tty ? {} : { tty: null }),
      });
      if (opts.json) return printJson(res);
      process.stdout.write(`${res.name}\n`);
    });

  onSession(session, "attach", "connect this terminal to a session: its scrollback, then live")
    .addHelpText("after", `\n${DETACH_HELP}\nExits with the session's status if it ends while attached.`)
    .action(async (vm: string, name: string) => {
      process.exitCode = await attachTerminal(vm, name);
    });

  onSession(session, "send", "write text to a session's input")
    .argument("<text>", "what to send")
    .option("-n, --no-newline", "do not append a newline")
    .action(async (vm: string, name: string, text: string, opts: { newline: boolean }) => {
      await callDaemon("session.send", { vm, name, data: opts.newline ? `${text}\n` : text });
    });

  onSession(session, "logs", "print a session's scrollback (the guest keeps its last 1 MiB of output)")
    .option("-f, --follow", "keep printing new output until the session ends (Ctrl-C to stop)")
    .action(async (vm: string, name: string, opts: { follow?: boolean }) => {
      await callDaemon("session.logs", { vm, name, follow: opts.follow ?? false }, { onEvent: streamEvents({ 1: process.stdout, 2: process.stderr }) }).catch((err: unknown) => {
        if (!(opts.follow && (err as { code?: number }).code === ErrorCode.Cancelled)) throw err;
      });
    });

  onSession(session, "kill", "signal a session (TERM by default); removes a session that already exited")
    .option("-s, --signal <signal>", "signal name or number, e.g. INT, KILL, 9", "TERM")
    .option("--json", "print JSON")
    .action(async (vm: string, name: string, opts: { signal: string; json?: boolean }) => {
      const res = await callDaemon("session.kill", { vm, name, signal: opts.signal });
      if (opts.json) return printJson(res);
      if (res.state === "running") process.stdout.write(`session ${name} signalled but still running (try --signal KILL)\n`);
      else if (res.state === "removed") process.stdout.write(`session ${name} removed\n`);
      else process.stdout.write(`session ${name} ${res.state} (${describeExit(res.exit)})\n`);
    });

  onSession(session, "rm", "forget an exited session (its scrollback goes with it)")
    .option("-f, --force", "kill it first if it still runs")
    .action(async (vm: string, name: string, opts: { force?: boolean }) => {
      await callDaemon("session.rm", { vm, name, force: opts.force ?? false });
      process.stdout.write(`session ${name} removed\n`);
    });
}
