// Test support (not a test file): a host repository with every kind of file a workspace copy
// must get right, a runner for guest-side commands, and a comparable view of a directory.
import { execFileSync, type ChildProcess } from "node:child_process";
import { after, before } from "node:test";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buffer as collect } from "node:stream/consumers";
import { connectAgent, type AgentClient } from "../../src/guest/index.ts";
import { dialUnix } from "../../src/vmm/index.ts";
import { startAgent } from "./agent-process.ts"; // the real agent as a process

const IDENT = {
  GIT_AUTHOR_NAME: "Test User",
  GIT_AUTHOR_EMAIL: "user@example.com",
  GIT_COMMITTER_NAME: "Test User",
  GIT_COMMITTER_EMAIL: "user@example.com",
};

/** Host-side git as the user would run it (fixed identity, no optional locks). */
export function hostGit(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    env: { ...process.env, ...IDENT, GIT_OPTIONAL_LOCKS: "0" },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** A new repository at dir (branch main) with one commit holding `files`. */
export function committedRepo(dir: string, files: Record<string, string>, message: string): string {
  mkdirSync(dir, { recursive: true });
  hostGit(dir, "init", "-q", "-b", "main");
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  hostGit(dir, "add", "-A");
  hostGit(dir, "commit", "-q", "-m", message);
  return dir;
}

/**
 * Starts the real agent (serve mode on a Unix socket in `home`) for the enclosing suite and
 * stops it after; `agent()` is the connected client.
 */
export function useAgent(home: string): { agent: () => AgentClient } {
  let proc: ChildProcess | undefined;
  let client: AgentClient | undefined;
  before(async () => {
    const sock = join(home, "agent.sock");
    proc = await startAgent(sock);
    client = await connectAgent(await dialUnix(sock), { timeoutMs: 5000 });
  });
  after(() => {
    client?.close();
    proc?.kill("SIGKILL");
  });
  return {
    agent: () => {
      if (!client) throw new Error("agent not started yet");
      return client;
    },
  };
}

/** Bytes that are not text: NUL, 0xff, a CR, everything. */
export const BINARY = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7 + (i >> 3)) & 0xff));

/** A file big enough to take the streamed path (over 256 KiB). */
export const BIG = Buffer.concat(Array.from({ length: 300 }, (_, i) => Buffer.alloc(3001, i & 0xff)));

/**
 * <root>/host: a committed repository with a text file, a binary file, an executable script,
 * a symlink, a .gitignore and a submodule (from <root>/subsrc); then uncommitted work: an
 * unstaged edit, a staged edit, a deleted tracked file, an untracked file, ignored files and
 * an untracked file inside the submodule.
 */
export function makeHostRepo(root: string): string {
  committedRepo(join(root, "subsrc"), { "lib.txt": "library v1\n" }, "lib");

  const host = join(root, "host");
  mkdirSync(join(host, "src"), { recursive: true });
  mkdirSync(join(host, "bin"));
  hostGit(host, "init", "-q", "-b", "main");
  writeFileSync(join(host, "README.md"), "# project\n");
  writeFileSync(join(host, "src", "app.js"), "console.log('v1');\n");
  writeFileSync(join(host, "bin", "run.sh"), "#!/bin/sh\necho run\n");
  chmodSync(join(host, "bin", "run.sh"), 0o755);
  writeFileSync(join(host, "data.bin"), BINARY);
  writeFileSync(join(host, "big.bin"), BIG); // larger than what pack reads whole: streamed in chunks
  writeFileSync(join(host, "to-delete.txt"), "bye\n");
  writeFileSync(join(host, ".gitignore"), "*.log\nbuild/\n");
  symlinkSync("README.md", join(host, "link"));
  hostGit(host, "add", "-A");
  hostGit(host, "commit", "-q", "-m", "initial");
  hostGit(host, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../subsrc", "sub");
  hostGit(host, "commit", "-q", "-m", "add submodule");

  writeFileSync(join(host, "README.md"), "# project\nunstaged edit\n");
  writeFileSync(join(host, "src", "app.js"), "console.log('v2 staged');\n");
  hostGit(host, "add", "src/app.js");
  unlinkSync(join(host, "to-delete.txt"));
  writeFileSync(join(host, "notes.txt"), "untracked notes\n");
  writeFileSync(join(host, "debug.log"), "ignored\n");
  mkdirSync(join(host, "build"));
  writeFileSync(join(host, "build", "out.o"), "ignored too\n");
  writeFileSync(join(host, "sub", "scratch.txt"), "untracked in the submodule\n");
  return host;
}

/** What a copy of makeHostRepo must hold outside .git directories. */
export const EXPECTED_FILES = [".gitignore", ".gitmodules", "README.md", "big.bin", "bin/run.sh", "data.bin", "link", "notes.txt", "src/app.js", "sub/lib.txt", "sub/scratch.txt"];

export interface NodeView {
  type: "file" | "symlink" | "dir";
  exec: boolean;
  /** sha256 of a file, target of a symlink. */
  content: string;
}

/** Files and symlinks under dir (relative names), skipping what `skip` says. */
export function viewTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, NodeView> {
  const out = new Map<string, NodeView>();
  const visit = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      if (skip(r)) continue;
      const abs = join(dir, r);
      const st = lstatSync(abs);
      if (st.isDirectory()) visit(r);
      else if (st.isSymbolicLink()) out.set(r, { type: "symlink", exec: false, content: readlinkSync(abs) });
      else out.set(r, { type: "file", exec: (st.mode & 0o100) !== 0, content: createHash("sha256").update(readFileSync(abs)).digest("hex") });
    }
  };
  visit("");
  return out;
}

/** Runs a shell script in the guest as `user`; fails the test with its output on a non-zero exit. */
export async function guestSh(agent: AgentClient, script: string, opts: { cwd: string; user?: string; env?: Record<string, string> }): Promise<string> {
  const h = await agent.exec({ argv: ["/bin/sh", "-c", script], cwd: opts.cwd, user: opts.user, env: opts.env });
  const [out, err, status] = await Promise.all([collect(h.stdout), collect(h.stderr), h.wait()]);
  if (!("exitCode" in status) || status.exitCode !== 0) throw new Error(`guest script failed (${JSON.stringify(status)}): ${script}\n${out.toString()}${err.toString()}`);
  return out.toString();
}

/** Every hook githooks(5) lists: a repository's own hooks must never run on the host. */
export const HOOK_NAMES = [
  "applypatch-msg",
  "pre-applypatch",
  "post-applypatch",
  "pre-commit",
  "pre-merge-commit",
  "prepare-commit-msg",
  "commit-msg",
  "post-commit",
  "pre-rebase",
  "post-checkout",
  "post-merge",
  "pre-push",
  "pre-receive",
  "update",
  "proc-receive",
  "post-receive",
  "post-update",
  "reference-transaction",
  "push-to-checkout",
  "pre-auto-gc",
  "post-rewrite",
  "sendemail-validate",
  "fsmonitor-watchman",
  "post-index-change",
  "p4-changelist",
  "p4-prepare-changelist",
  "p4-post-changelist",
  "p4-pre-submit",
];

/**
 * Every config key (or class of keys) whose value git runs as a program, set by the
 * repository to a canary. `{}` stands for the canary's path; a key listed twice is a class
 * member worth naming on its own.
 */
const PROGRAM_KEYS: ReadonlyArray<readonly [key: string, value: string]> = [
  ["filter.canary.clean", "{}"],
  ["filter.canary.smudge", "{}"],
  ["filter.proc.process", "{}"],
  ["diff.canary.textconv", "{}"],
  ["diff.canary.command", "{}"],
  ["diff.external", "{}"],
  ["merge.canary.driver", "{}"],
  ["gpg.program", "{}"],
  ["gpg.ssh.program", "{}"],
  ["gpg.x509.program", "{}"],
  ["gpg.ssh.defaultKeyCommand", "{}"],
  ["core.fsmonitor", "{}"],
  ["core.pager", "{}"],
  ["pager.am", "{}"],
  ["core.editor", "{}"],
  ["sequence.editor", "{}"],
  ["core.askPass", "{}"],
  ["credential.helper", "{}"],
  ["core.sshCommand", "{}"],
  ["core.gitProxy", "{}"],
  ["core.alternateRefsCommand", "{}"],
  ["uploadpack.packObjectsHook", "{}"],
  ["remote.origin.url", "ext::{}"],
  ["remote.origin.uploadpack", "{}"],
  ["remote.origin.receivepack", "{}"],
  ["trailer.canary.command", "{}"],
  ["alias.add", "!{}"],
];

/** What the canary repository switches on so the keys above get their chance. */
const PROGRAM_SWITCHES: ReadonlyArray<readonly [key: string, value: string]> = [
  ["commit.gpgSign", "true"],
  ["tag.gpgSign", "true"],
  ["protocol.allow", "always"],
  ["protocol.ext.allow", "always"],
  ["core.untrackedCache", "true"],
  ["gc.auto", "1"],
  ["maintenance.auto", "true"],
  ["filter.canary.required", "false"],
];

/** Attributes that hand every file of the canary repository to the configured drivers. */
const CANARY_ATTRIBUTES = "*.txt filter=canary diff=canary merge=canary\n*.dat filter=proc\n*.inc filter=inc\n*.incif filter=incif\n";

export interface CanaryRepo {
  repo: string;
  /** The labels of every canary that ran so far (empty when none did). */
  ran: () => string[];
}

/**
 * <root>/canary: a committed repository whose own config (directly, through include.path
 * and through includeIf) names a canary program for every key git would run, whose hooks
 * (in .git/hooks and in core.hooksPath) are canaries too, and whose files are all dirty so
 * that filters get their chance when the state is recorded.
 */
export function canaryRepo(root: string): CanaryRepo {
  const repo = join(root, "canary");
  const bin = join(root, "canary-bin");
  const log = join(root, "canary.log");
  mkdirSync(bin, { recursive: true });
  const canary = (label: string, path = join(bin, label.replace(/[^A-Za-z0-9.-]/g, "_"))): string => {
    // Answers with something no file contains, without waiting for input (a process
    // filter's stdin never ends).
    writeFileSync(path, `#!/bin/sh\necho '${label}' >> '${log}'\nexec 0<&-\necho FILTERED\n`, { mode: 0o755 });
    return path;
  };
  committedRepo(repo, { "a.txt": "text v1\n", "b.dat": "data v1\n", "c.inc": "inc v1\n", "d.incif": "incif v1\n", ".gitattributes": CANARY_ATTRIBUTES }, "canary base");
  const set = (file: string, key: string, value: string) => hostGit(repo, "config", "--file", file, key, value);
  const config = join(repo, ".git", "config");
  for (const [key, value] of PROGRAM_KEYS) set(config, key, value.replace("{}", canary(key)));
  for (const [key, value] of PROGRAM_SWITCHES) set(config, key, value);
  const included = join(root, "included.gitconfig");
  set(included, "filter.inc.clean", canary("include.path filter.inc.clean"));
  set(included, "filter.inc.smudge", canary("include.path filter.inc.smudge"));
  set(config, "include.path", included);
  const includedIf = join(root, "included-if.gitconfig");
  set(includedIf, "filter.incif.clean", canary("includeIf filter.incif.clean"));
  set(includedIf, "filter.incif.smudge", canary("includeIf filter.incif.smudge"));
  set(config, "includeIf.gitdir:/.path", includedIf);
  const hooksPath = join(root, "canary-hooks");
  mkdirSync(hooksPath);
  for (const hook of HOOK_NAMES) {
    canary(`core.hooksPath ${hook}`, join(hooksPath, hook));
    canary(`.git/hooks ${hook}`, join(repo, ".git", "hooks", hook));
  }
  set(config, "core.hooksPath", hooksPath);
  for (const name of ["a.txt", "b.dat", "c.inc", "d.incif"]) writeFileSync(join(repo, name), `${name} edited on the host\n`);
  writeFileSync(join(repo, "new.txt"), "untracked on the host\n");
  return { repo, ran: () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []) };
}

/**
 * A version 2 index listing `paths` (each a regular file, or `mode`, with blob `oid`), written
 * byte by byte: git itself refuses to record names such as "../x", which is the point.
 */
export function handWrittenIndex(paths: readonly string[], oid: string, mode = 0o100644): Buffer {
  const header = Buffer.alloc(12);
  header.write("DIRC", 0);
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(paths.length, 8);
  const entries = [...paths].sort().map((path) => {
    const name = Buffer.from(path);
    // 62 bytes of stat data, id and flags, the name, then 1 to 8 NULs to a multiple of 8.
    const entry = Buffer.alloc(Math.ceil((62 + name.length + 1) / 8) * 8);
    entry.writeUInt32BE(mode, 24);
    entry.write(oid, 40, "hex");
    entry.writeUInt16BE(Math.min(name.length, 0xfff), 60);
    name.copy(entry, 62);
    return entry;
  });
  const body = Buffer.concat([header, ...entries]);
  return Buffer.concat([body, createHash("sha1").update(body).digest()]);
}
