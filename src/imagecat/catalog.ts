// The image catalog: the embedded catalog.json (empty until bundles are published) or an
// override that replaces it; entries may name the kernel to pair with (kernel_ref).
import { type Catalog, type CatalogEntry, type FieldRules, loadCatalogFrom, lookupEntry, nameField, parseCatalogText } from "../bundle/index.ts";
import { validateName } from "../util/names.ts";
import embedded from "./catalog.json" with { type: "json" };

export interface ImageCatalogEntry extends CatalogEntry {
  /** The kernel catalog entry this image is meant to boot with. */
  kernel_ref?: string;
}

export type ImageCatalog = Catalog<ImageCatalogEntry>;

const IMAGE_FIELDS: FieldRules = {
  kernel_ref: { required: false, check: nameField },
};

/** Parses and validates catalog.json text; `base` resolves relative tarball URLs (mirrors). */
export function parseCatalog(text: string, source: string, base?: string): ImageCatalog {
  return parseCatalogText<ImageCatalogEntry>(text, source, IMAGE_FIELDS, base);
}

/** The override catalog (path or http(s)/file URL) when given, else the one built into banger. */
export function loadCatalog(override?: string, signal?: AbortSignal): Promise<ImageCatalog> {
  return loadCatalogFrom<ImageCatalogEntry>("image", embedded, IMAGE_FIELDS, override, signal);
}

/**
 * The entry called `ref`, or undefined (then `image pull` falls through to OCI). A ref that
 * is not a valid name (an OCI reference like "debian:12") simply is not in the catalog.
 */
export function lookup(catalog: ImageCatalog, ref: string): ImageCatalogEntry | undefined {
  return lookupEntry(catalog, ref);
}

/** Like lookup, but a malformed name is an InvalidArgument error (for callers that only take names). */
export function lookupName(catalog: ImageCatalog, name: string): ImageCatalogEntry | undefined {
  return lookupEntry(catalog, validateName("image", name));
}
