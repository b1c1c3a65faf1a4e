// The SSH keys banger puts in guests: the public keys `banger ssh-config` registered (kept
// in the store), the check each key passes, and installing them in a guest (at boot and on
// `banger ssh-config`).
import type { AgentClient } from "../guest/index.ts";
import type { Store } from "../store/index.ts";
import { failed, invalidArgument } from "../util/errors.ts";
import { runInGuest } from "./guest-run.ts";

/** Installing keys is a few file appends: a guest that takes longer is stuck or hostile. */
export const SSH_KEYS_TIMEOUT_MS = Number(process.env.BANGER_SSH_KEYS_TIMEOUT_MS ?? 15_000);
const SSH_KEYS_SETTING = "ssh.authorized_keys";

const PUBLIC_KEY = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]{16,16384}( [^\n\r\0]{0,256})?$/;

/** One OpenSSH public key line; anything else (several lines, options) is refused. */
export function validatePublicKey(text: string): string {
  const key = text.trim();
  if (!PUBLIC_KEY.test(key)) throw invalidArgument("not an OpenSSH public key line", "pass the contents of a .pub file, e.g. ~/.ssh/id_ed25519.pub");
  return key;
}

/** Public keys `banger ssh-config` registered (installed in every guest at boot). */
export function authorizedKeys(store: Store): string[] {
  const text = store.getSetting(SSH_KEYS_SETTING);
  return text ? (JSON.parse(text) as string[]) : [];
}

/** Registers a public key for every VM; returns the current list. */
export function authorizeKey(store: Store, publicKey: string): string[] {
  const key = validatePublicKey(publicKey);
  const keys = authorizedKeys(store);
  if (!keys.includes(key)) {
    keys.push(key);
    store.setSetting(SSH_KEYS_SETTING, JSON.stringify(keys));
  }
  return keys;
}

/**
 * Runs in the guest, as root, as `/bin/sh -c INSTALL_KEYS_SCRIPT`: appends each line of
 * $BANGER_KEYS to root's authorized_keys (and the dev user's, when the image has one),
 * skipping keys already there. The script is a constant: the keys reach it only as the
 * environment variable BANGER_KEYS, never as text of the script.
 */
const INSTALL_KEYS_SCRIPT = [
  "set -e",
  'install_keys() { home="$1"; owner="$2"; mkdir -p "$home/.ssh"; chmod 700 "$home/.ssh"; f="$home/.ssh/authorized_keys"; touch "$f"; chmod 600 "$f";',
  '  printf "%s\\n" "$BANGER_KEYS" | while IFS= read -r k; do [ -z "$k" ] || grep -qxF "$k" "$f" || printf "%s\\n" "$k" >> "$f"; done;',
  '  chown -R "$owner" "$home/.ssh"; }',
  "install_keys /root 0:0",
  'if grep -q "^dev:" /etc/passwd && [ -d /home/dev ]; then install_keys /home/dev dev; fi',
].join("\n");

/** Installs the keys in the guest (INSTALL_KEYS_SCRIPT), bounded in time. */
export async function installSshKeys(agent: AgentClient, keys: readonly string[], opts: { timeoutMs?: number } = {}): Promise<void> {
  if (keys.length === 0) return;
  const timeoutMs = opts.timeoutMs ?? SSH_KEYS_TIMEOUT_MS;
  const hint = "is the guest overloaded or its shell stuck? restart the VM and run `banger ssh-config` again";
  const res = await runInGuest(agent, ["/bin/sh", "-c", INSTALL_KEYS_SCRIPT], { env: { BANGER_KEYS: keys.join("\n") }, timeoutMs, what: "installing SSH keys in the guest", hint });
  if (!("exitCode" in res.status) || res.status.exitCode !== 0) throw failed(`installing SSH keys in the guest failed: ${res.lastLine || JSON.stringify(res.status)}`);
}
