// The one vocabulary for CPU architectures: Debian's and OCI's `amd64` / `arm64`, which is
// what banger prints everywhere (JSON, tables, the store). Other spellings (`x86_64`,
// `aarch64` from uname, Node's `x64`) are accepted on input and normalised here.
import { invalidArgument } from "./errors.ts";

export type Arch = "amd64" | "arm64";

/** Every spelling that means the same machine, lower-case, mapped to the one banger prints. */
const ALIASES: Record<string, string> = {
  amd64: "amd64",
  x86_64: "amd64",
  "x86-64": "amd64",
  x64: "amd64",
  arm64: "arm64",
  aarch64: "arm64",
  // 32-bit ARM as Debian names it (only ever seen in OCI indexes: banger runs no such guest).
  armhf: "arm",
  armel: "arm",
};

/**
 * The canonical name of an architecture (`x86_64` → `amd64`, `aarch64` → `arm64`); names it
 * does not know come back lower-cased, unchanged (an OCI index may list riscv64, s390x, ...).
 */
export function normalizeArch(text: string): string {
  const lower = text.trim().toLowerCase();
  return ALIASES[lower] ?? lower;
}

/** A user's `--arch`: amd64 or arm64 in any spelling, else a usage error naming the flag. */
export function parseArch(text: string, flag = "--arch"): Arch {
  const arch = normalizeArch(text);
  if (arch !== "amd64" && arch !== "arm64") throw invalidArgument(`${flag} takes amd64 or arm64 (x86_64 and aarch64 are accepted too), not ${JSON.stringify(text)}`);
  return arch;
}

/** This host's architecture in banger's vocabulary (`x64` → `amd64`); others as Node names them. */
export function hostArch(nodeArch: string = process.arch): string {
  return normalizeArch(nodeArch);
}
