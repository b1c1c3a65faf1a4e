// The kernel catalog: the embedded catalog.json (empty until bundles are published) or an
// override that replaces it, with kernel_version on every entry.
import { type Catalog, type CatalogEntry, type FieldRules, loadCatalogFrom, lookupEntry, parseCatalogText, sizeField, textField } from "../bundle/index.ts";
import { validateName } from "../util/names.ts";
import embedded from "./catalog.json" with { type: "json" };
import { kernelBundleRules } from "./pull.ts";

export interface KernelCatalogEntry extends CatalogEntry {
  /** The kernel release, e.g. "6.1.0-18-cloud-amd64". */
  kernel_version: string;
}

export type KernelCatalog = Catalog<KernelCatalogEntry>;

const KERNEL_FIELDS: FieldRules = {
  size_bytes: { required: true, check: sizeField(kernelBundleRules.maxDecodedBytes) },
  kernel_version: { required: true, check: textField(64, /^[0-9A-Za-z._+~-]+$/, "a kernel release like 6.1.0-18-cloud-amd64") },
};

/** Parses and validates catalog.json text; `base` resolves relative tarball URLs (mirrors). */
export function parseCatalog(text: string, source: string, base?: string): KernelCatalog {
  return parseCatalogText<KernelCatalogEntry>(text, source, KERNEL_FIELDS, base);
}

/** The override catalog (path or http(s)/file URL) when given, else the one built into banger. */
export function loadCatalog(override?: string, signal?: AbortSignal): Promise<KernelCatalog> {
  return loadCatalogFrom<KernelCatalogEntry>("kernel", embedded, KERNEL_FIELDS, override, signal);
}

/** The entry called `name`, or undefined; a malformed name is an InvalidArgument error. */
export function lookup(catalog: KernelCatalog, name: string): KernelCatalogEntry | undefined {
  return lookupEntry(catalog, validateName("kernel", name));
}
