// The catalog format both catalogs share: `{version: 1, entries: [...]}` where each entry
// names one bundle (name, distro, arch, tarball_url, tarball_sha256, size_bytes, description)
// plus the fields of its kind (kernelcat: kernel_version; imagecat: kernel_ref). Catalogs
// may come from a mirror, so they are validated strictly: every known field has a type and a
// bound, and a malformed catalog fails naming the field (`entries[2].tarball_sha256: ...`).
// Unknown fields are ignored, so a newer catalog still loads in an older banger.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { BangerError, ErrorCode, integrity } from "../util/errors.ts";
import { normalizeArch } from "../util/arch.ts";
import { isValidName } from "../util/names.ts";
import { openSource, parseSourceUrl, readAllBounded } from "./source.ts";

export interface CatalogEntry {
  name: string;
  distro?: string;
  arch?: string;
  /** Absolute http(s) or file URL (relative ones in an override catalog resolve against it). */
  tarball_url: string;
  /** Lowercase hex. */
  tarball_sha256: string;
  size_bytes: number;
  description?: string;
}

export interface Catalog<E extends CatalogEntry = CatalogEntry> {
  version: 1;
  entries: E[];
}

/** Checks one kind-specific field; returns what was expected when the value is wrong. */
export interface FieldRule {
  required: boolean;
  check(value: unknown): string | undefined;
}

export type FieldRules = Record<string, FieldRule>;

/** A catalog fetched from a path or URL is at most this big. */
export const MAX_CATALOG_BYTES = 4 * 1024 * 1024;

const PRINTABLE = /^[^\p{Cc}]*$/u;

/** A string field of at most `max` printable characters (no control characters: they reach terminals). */
export function textField(max: number, pattern?: RegExp, what?: string): FieldRule["check"] {
  return (v) => {
    if (typeof v !== "string" || v === "" || v.length > max || !PRINTABLE.test(v)) return `expected a non-empty string of at most ${max} printable characters`;
    if (pattern && !pattern.test(v)) return `expected ${what ?? `to match ${pattern}`}`;
    return undefined;
  };
}

export const nameField: FieldRule["check"] = (v) =>
  typeof v === "string" && isValidName(v) ? undefined : "expected a name: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters";

export const archField: FieldRule["check"] = textField(32, /^[a-z0-9_]+$/, "an architecture like amd64 or arm64 (x86_64 and aarch64 are read as those)");

/**
 * The fields every entry has, as banger prints them (CLI --json, the web API): camelCase,
 * sizes in bytes, arch as amd64/arm64. The catalog file keeps its own snake_case format.
 */
export interface CatalogEntryView {
  name: string;
  distro?: string;
  arch?: string;
  tarballUrl: string;
  tarballSha256: string;
  sizeBytes: number;
  description?: string;
}

export function catalogEntryView(e: CatalogEntry): CatalogEntryView {
  return {
    name: e.name,
    ...(e.distro !== undefined ? { distro: e.distro } : {}),
    ...(e.arch !== undefined ? { arch: normalizeArch(e.arch) } : {}),
    tarballUrl: e.tarball_url,
    tarballSha256: e.tarball_sha256,
    sizeBytes: e.size_bytes,
    ...(e.description !== undefined ? { description: e.description } : {}),
  };
}

/** A byte count: a positive integer of at most `max` (the bundle kind's cap). */
export function sizeField(max: number): FieldRule["check"] {
  return (v) => (Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= max ? undefined : `expected a positive integer of at most ${max}`);
}

/** The largest bundle any catalog may list; a kind may say less (kernelcat does). */
const MAX_BUNDLE_BYTES = 64 * 1024 ** 3;

const COMMON_FIELDS: FieldRules = {
  name: { required: true, check: nameField },
  distro: { required: false, check: textField(64) },
  arch: { required: false, check: archField },
  tarball_sha256: { required: true, check: (v) => (typeof v === "string" && /^[0-9a-fA-F]{64}$/.test(v) ? undefined : "expected 64 hex chars") },
  size_bytes: { required: true, check: sizeField(MAX_BUNDLE_BYTES) },
  description: { required: false, check: textField(1024) },
};

function malformed(source: string, message: string): BangerError {
  return integrity(`${source}: ${message}`, "fix the catalog, or unset the catalog override to use the built-in one");
}

/**
 * Validates a parsed catalog.json value. `extra` adds the kind's own fields; `base` (the
 * catalog's own URL) lets tarball_url be relative. Returns a normalised copy.
 */
export function parseCatalogValue<E extends CatalogEntry>(raw: unknown, source: string, extra: FieldRules, base?: string): Catalog<E> {
  if (!isObject(raw)) throw malformed(source, "expected a JSON object");
  if (raw.version !== 1) throw malformed(source, `version: expected 1, got ${JSON.stringify(raw.version)}`);
  if (!Array.isArray(raw.entries)) throw malformed(source, "entries: expected a list");
  const rules = { ...COMMON_FIELDS, ...extra };
  const seen = new Map<string, number>();
  const entries = raw.entries.map((e: unknown, i: number) => {
    const where = `entries[${i}]`;
    const entry = parseEntry(e, rules, base, (msg) => malformed(source, `${where}${msg}`));
    const dup = seen.get(entry.name);
    if (dup !== undefined) throw malformed(source, `${where}.name: ${JSON.stringify(entry.name)} duplicates entries[${dup}]`);
    seen.set(entry.name, i);
    return entry as E;
  });
  return { version: 1, entries };
}

export function parseCatalogText<E extends CatalogEntry>(text: string, source: string, extra: FieldRules, base?: string): Catalog<E> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw malformed(source, `not valid JSON: ${(err as Error).message}`);
  }
  return parseCatalogValue<E>(raw, source, extra, base);
}

function parseEntry(raw: unknown, rules: FieldRules, base: string | undefined, fail: (msg: string) => BangerError): CatalogEntry {
  if (!isObject(raw)) throw fail(": expected an object");
  const out = pickFields(raw, rules, (key, problem) => fail(`.${key}: ${problem}`));
  out.tarball_url = tarballUrl(raw.tarball_url, base, fail);
  out.tarball_sha256 = (out.tarball_sha256 as string).toLowerCase();
  return out as unknown as CatalogEntry;
}

/** Checks the fields `rules` knows and returns them (unknown ones are dropped). */
export function pickFields(raw: Record<string, unknown>, rules: FieldRules, fail: (key: string, problem: string) => Error): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, rule] of Object.entries(rules)) {
    const value = raw[key];
    if (value === undefined || value === null) {
      if (rule.required) throw fail(key, "missing");
      continue;
    }
    const problem = rule.check(value);
    if (problem) throw fail(key, problem);
    out[key] = value;
  }
  return out;
}

function tarballUrl(value: unknown, base: string | undefined, fail: (msg: string) => BangerError): string {
  if (value === undefined || value === null) throw fail(".tarball_url: missing");
  if (typeof value !== "string" || value.length > 2048 || !PRINTABLE.test(value)) throw fail(".tarball_url: expected a URL string");
  if (base === undefined && !/^[a-z][a-z0-9+.-]*:/i.test(value)) throw fail(".tarball_url: expected an absolute http(s) or file URL");
  let url: URL;
  try {
    url = parseSourceUrl(value, base);
  } catch (err) {
    throw fail(`.tarball_url: ${(err as Error).message}`);
  }
  if (url.username || url.password) throw fail(".tarball_url: expected no user name or password in the URL");
  // A catalog from the network may not make the daemon read its own files.
  if (url.protocol === "file:" && base !== undefined && !base.startsWith("file:")) throw fail(".tarball_url: a catalog served over http(s) cannot name a file: URL");
  return url.href;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads a catalog from a path or http(s)/file URL, bounded; returns its text and its URL (the base for relative tarball URLs). */
export async function readCatalogSource(location: string, signal?: AbortSignal): Promise<{ text: string; url: string }> {
  const url = parseSourceUrl(location);
  if (url.protocol === "file:") {
    const path = fileURLToPath(url);
    const buf = await readFile(path, { signal }).catch((err: NodeJS.ErrnoException) => {
      throw new BangerError(ErrorCode.NotFound, `catalog ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`, "check the catalog override (BANGER_*_CATALOG or the config file)");
    });
    if (buf.length > MAX_CATALOG_BYTES) throw malformed(path, `larger than ${MAX_CATALOG_BYTES} bytes`);
    return { text: buf.toString("utf8"), url: url.href };
  }
  const src = await openSource(url, { signal });
  const body = await readAllBounded(src, MAX_CATALOG_BYTES, () => malformed(url.href, `larger than ${MAX_CATALOG_BYTES} bytes`));
  return { text: body.toString("utf8"), url: url.href };
}

/** The entry called `name`, or undefined. */
export function lookupEntry<E extends CatalogEntry>(catalog: Catalog<E>, name: string): E | undefined {
  return catalog.entries.find((e) => e.name === name);
}

/**
 * The catalog in force: the override (path or http(s)/file URL, from BANGER_*_CATALOG or the
 * config file) when given, which replaces the embedded one entirely; else the embedded one.
 */
export async function loadCatalogFrom<E extends CatalogEntry>(kind: string, embedded: unknown, extra: FieldRules, override: string | undefined, signal?: AbortSignal): Promise<Catalog<E>> {
  if (!override) return parseCatalogValue<E>(embedded, `built-in ${kind} catalog`, extra);
  const { text, url } = await readCatalogSource(override, signal);
  return parseCatalogText<E>(text, `${kind} catalog ${override}`, extra, url);
}
