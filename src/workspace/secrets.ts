// Which paths a workspace copy leaves out as secrets, unless the user names them with
// --include. The rule, by where a file comes from:
//
// - A plain directory (outside git): every path whose name (or tail of names) is on the list
//   below is skipped, wherever it is in the tree; a skipped directory is not walked.
// - A repository's untracked, not ignored files: the same rule.
// - A repository's TRACKED files are always copied, even when their name is on the list: the
//   user committed them, so their content is in the history (.git) that is copied anyway,
//   and leaving out the work-tree file would hide nothing while showing the guest a deletion
//   that never happened. Remove such a file from the repository to keep it out of guests.
//
// The list is deliberately about names, not content: credentials and keys of the common
// tools (ssh, cloud CLIs, docker, kubectl, package registries, databases), `.env` files, and
// shell histories (which hold tokens typed on command lines).
import { posix } from "node:path";
import { invalidArgument } from "../util/errors.ts";

/** A path component that is a secret wherever it appears. */
const SECRET_NAMES = new Set([
  ".ssh",
  ".gnupg",
  ".aws",
  ".azure",
  ".kube",
  ".password-store",
  ".netrc",
  "_netrc",
  ".git-credentials",
  ".pgpass",
  ".my.cnf",
  ".pypirc",
  ".npmrc",
  ".vault-token",
  ".boto",
  ".s3cfg",
  "id_rsa",
  "id_dsa",
  "id_ecdsa",
  "id_ed25519",
  "id_ecdsa_sk",
  "id_ed25519_sk",
  ".bash_history",
  ".zsh_history",
  ".python_history",
  ".psql_history",
  ".mysql_history",
  ".node_repl_history",
]);

/** Trailing component sequences that are secrets (a tool's credentials inside a broader config directory). */
const SECRET_TAILS = [
  ".docker/config.json",
  ".config/gcloud",
  ".config/gh/hosts.yml",
  ".config/hub",
  ".terraform.d/credentials.tfrc.json",
  ".cargo/credentials",
  ".cargo/credentials.toml",
  ".local/share/keyrings",
];

/** `.env`, `.env.local`, `.envrc`...; templates meant to be shared are not secrets. */
function isEnvFile(name: string): boolean {
  return /^\.env(rc|\..+)?$/.test(name) && !/\.(example|sample|template|dist)$/.test(name);
}

/** True when the path (relative, "/"-separated) itself, by its last component(s), is a secret. */
function namesSecret(rel: string): boolean {
  const base = posix.basename(rel);
  if (SECRET_NAMES.has(base) || isEnvFile(base)) return true;
  return SECRET_TAILS.some((tail) => rel === tail || rel.endsWith(`/${tail}`));
}

export type Verdict = "copy" | "skip" | "descend";

/**
 * Judges paths relative to the copied directory and remembers what it left out. `include`
 * holds relative paths the user asked for (a secret path, or something inside one).
 */
export class SecretFilter {
  private readonly skippedNames = new Set<string>();

  constructor(private readonly include: readonly string[] = []) {}

  /** "descend": a secret directory holding something included; its entries are judged one by one. */
  verdict(rel: string, isDir: boolean): Verdict {
    if (this.include.some((i) => i === "" || rel === i || rel.startsWith(`${i}/`))) return "copy";
    const secret = this.secretPrefix(rel);
    if (secret === undefined) return "copy";
    if (isDir && this.include.some((i) => i.startsWith(`${rel}/`))) return "descend";
    // Reported once per secret directory, unless part of it was included (then per path).
    this.skippedNames.add(this.include.some((i) => i.startsWith(`${secret}/`)) ? rel : secret);
    return "skip";
  }

  /** What was left out (relative paths, sorted): a secret directory once, not each file in it. */
  get skipped(): string[] {
    return [...this.skippedNames].sort();
  }

  /** The shortest leading part of `rel` that is a secret. */
  private secretPrefix(rel: string): string | undefined {
    const parts = rel.split("/");
    for (let n = 1; n <= parts.length; n++) {
      const prefix = parts.slice(0, n).join("/");
      if (namesSecret(prefix)) return prefix;
    }
    return undefined;
  }
}

/**
 * --include values as paths relative to `root`: relative ones are taken from `from` (the
 * directory the user named, or the current one), and each must lie inside the copy ("." is
 * all of it: nothing is skipped).
 */
export function includePaths(include: readonly string[], root: string, from: string): string[] {
  return include.map((inc) => {
    const rel = posix.relative(root, posix.resolve(from, inc));
    if (rel === ".." || rel.startsWith("../") || posix.isAbsolute(rel)) {
      throw invalidArgument(`--include ${inc} is not inside the workspace ${root}`, "name a path inside the copied directory, e.g. --include .env");
    }
    return rel;
  });
}
