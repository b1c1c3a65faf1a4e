// The one naming rule shared by kernels, images, VMs and snapshots (docs/decisions.md): checked before any I/O.
import { invalidArgument } from "./errors.ts";

export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export type NamedKind = "kernel" | "image" | "vm" | "session" | "snapshot" | "sandbox" | "template";

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

export function validateName(kind: NamedKind, name: unknown): string {
  if (typeof name !== "string" || name.trim() === "") throw invalidArgument(`${kind} name is required`);
  if (!NAME_PATTERN.test(name)) {
    throw invalidArgument(`invalid ${kind} name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-', start with a letter or digit, at most 64 characters`);
  }
  return name;
}
