// SSH for `ssh <name>.vm`: a banger-written include file with one `Host *.vm` block, a
// banger-managed known_hosts (VM names are reused with new host keys, so banger forgets a
// VM's key when the VM is removed), and a banger-managed ed25519 key when the user has none.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { run, runChecked } from "../util/exec.ts";
import { VM_DOMAIN } from "./dns.ts";

export interface SshConfigOptions {
  /** The include file banger owns, e.g. ~/.ssh/banger.conf or <root>/ssh/config. */
  includePath: string;
  keyPath: string;
  knownHostsPath: string;
  /** Default "root". */
  user?: string;
  /** E.g. "banger vm ssh-proxy %h": reach the VM over the agent channel, no networking needed. */
  proxyCommand?: string;
}

/** ssh_config values: absolute paths quoted; no characters that could end or extend a line. */
function configValue(value: string, what: string, path = false): string {
  if (/[\n\r"\0]/.test(value) || value.trim() === "") throw invalidArgument(`${what} cannot be used in an ssh config: ${JSON.stringify(value)}`);
  if (path && !isAbsolute(value)) throw invalidArgument(`${what} must be an absolute path: ${value}`);
  return path ? `"${value}"` : value;
}

export function renderSshConfig(opts: SshConfigOptions): string {
  const lines = [
    "# Written by banger (`banger ssh-config`); changes here are overwritten.",
    `Host *.${VM_DOMAIN}`,
    `  User ${configValue(opts.user ?? "root", "ssh user")}`,
    `  IdentityFile ${configValue(opts.keyPath, "key path", true)}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${configValue(opts.knownHostsPath, "known_hosts path", true)}`,
    "  StrictHostKeyChecking accept-new",
  ];
  if (opts.proxyCommand) lines.push(`  ProxyCommand ${configValue(opts.proxyCommand, "proxy command")}`);
  return `${lines.join("\n")}\n`;
}

/** The `Include` line for ~/.ssh/config (it must come before the first Host block there). */
export function sshIncludeLine(includePath: string): string {
  return `Include ${configValue(includePath, "include path", true)}`;
}

/** Writes the include file (atomically) and returns the one line to add to ~/.ssh/config. */
export async function writeSshConfig(opts: SshConfigOptions): Promise<string> {
  const text = renderSshConfig(opts);
  const line = sshIncludeLine(opts.includePath);
  await mkdir(dirname(opts.includePath), { recursive: true, mode: 0o700 });
  const tmp = `${opts.includePath}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, opts.includePath);
  return line;
}

/** Removes a VM's host key from banger's known_hosts (call on `vm rm`); missing is fine. */
export async function forgetKnownHost(knownHostsPath: string, vmName: string): Promise<void> {
  if (!existsSync(knownHostsPath)) return;
  await run(["ssh-keygen", "-R", `${vmName}.${VM_DOMAIN}`, "-f", knownHostsPath], { timeoutMs: 10_000 });
  await rm(`${knownHostsPath}.old`, { force: true });
}

export interface SshKey {
  privateKeyPath: string;
  publicKeyPath: string;
  /** The public key line to install in guests' authorized_keys. */
  publicKey: string;
  /** True when the key is banger's own (at `key`), false when the user's was found. */
  managed: boolean;
  created: boolean;
}

const USER_KEY_NAMES = ["id_ed25519", "id_ecdsa", "id_rsa"];

/**
 * The user's key from `userSshDir` when one exists (private and public half), else banger's
 * own ed25519 key at `key` (config's sshPaths), created with ssh-keygen on first use.
 */
export async function ensureSshKey(key: string, opts: { userSshDir?: string } = {}): Promise<SshKey> {
  if (opts.userSshDir) {
    for (const name of USER_KEY_NAMES) {
      const priv = join(opts.userSshDir, name);
      if (existsSync(priv) && existsSync(`${priv}.pub`)) return loadKey(priv, false, false);
    }
  }
  const priv = key;
  if (existsSync(priv) && existsSync(`${priv}.pub`)) return loadKey(priv, true, false);
  const dir = dirname(priv);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Generate under a temporary name and rename both halves, so a crash leaves no half key.
  const tmp = join(dir, `.${basename(priv)}.tmp-${process.pid}`);
  await rm(tmp, { force: true });
  await rm(`${tmp}.pub`, { force: true });
  try {
    await runChecked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f", tmp], { timeoutMs: 30_000 });
    await rename(`${tmp}.pub`, `${priv}.pub`);
    await rename(tmp, priv);
  } catch (err) {
    await rm(tmp, { force: true });
    await rm(`${tmp}.pub`, { force: true });
    throw err;
  }
  return loadKey(priv, true, true);
}

async function loadKey(priv: string, managed: boolean, created: boolean): Promise<SshKey> {
  const publicKey = (await readFile(`${priv}.pub`, "utf8")).trim();
  return { privateKeyPath: priv, publicKeyPath: `${priv}.pub`, publicKey, managed, created };
}
