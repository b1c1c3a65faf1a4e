// Path rules for image entries: relative, normalised, never escaping the root, and
// expressible in a debugfs script line (no NUL or newline).
import { posix } from "node:path";
import { invalidArgument } from "../util/errors.ts";

/** Longest path we accept; keeps every debugfs script line well under its 8 KiB buffer. */
export const MAX_PATH_BYTES = 3000;
const MAX_COMPONENT_BYTES = 255;

/**
 * Normalises a tar member name to an image path ("usr/bin/env"); "" is the root itself.
 * Throws for absolute names, names escaping the root, and characters debugfs cannot take.
 */
export function normalizeEntryPath(name: string, what = "tar member"): string {
  if (/[\0\n\r]/.test(name)) throw invalidArgument(`${what} ${JSON.stringify(name)} contains a control character`);
  if (name.startsWith("/")) throw invalidArgument(`${what} ${JSON.stringify(name)} is an absolute path`, "the rootfs tar must hold relative paths (docker export style)");
  const norm = posix.normalize(name === "" ? "." : name).replace(/\/+$/, "");
  if (norm === ".") return "";
  if (norm === ".." || norm.startsWith("../")) throw invalidArgument(`${what} ${JSON.stringify(name)} escapes the image root`);
  if (Buffer.byteLength(norm) > MAX_PATH_BYTES) throw invalidArgument(`${what} path is longer than ${MAX_PATH_BYTES} bytes`);
  if (norm.split("/").some((c) => Buffer.byteLength(c) > MAX_COMPONENT_BYTES)) {
    throw invalidArgument(`${what} ${JSON.stringify(name.slice(0, 80))} has a name longer than 255 bytes`);
  }
  return norm;
}

/** The parent of an image path ("" for top-level entries). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}
