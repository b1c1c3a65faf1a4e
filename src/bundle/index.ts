// Package bundle owns getting a `.tar.zst` bundle from a URL into a directory safely, and the
// catalog format that lists such bundles.
//
// fetchBundle streams the download (http, https or file URL; http.ts is a small client that
// reads the socket straight into the pipeline's buffers) through SHA-256 while zstd
// decodes it and a hardened tar reader extracts it into a staging directory beside the
// destination; the staging directory is renamed into place only when the size, the sha256
// and every member check passed. Verified downloads are cached by sha256 under
// `<cacheDir>/bundles/`, so a retry or a second pull does not download again. Every failure
// (HTTP, truncation, oversize, sha256, unsafe member, decompression bomb, cancellation) is
// one BangerError and leaves nothing behind but verified downloads in the cache. The threads
// that move the bytes (feeder.ts, unpacker.ts) run modules of their own, `<name>-worker.ts`:
// workers.ts starts them, scripts/build.mjs builds them to dist/workers/.
// makeTarZst is the reproducible producer side. The catalog helpers parse and validate the
// shared `{version, entries}` format and read override catalogs from paths or URLs; the file
// is snake_case, and catalogEntryView gives an entry as banger prints it (camelCase).
//
// Member names and link targets pass the shared path rule (util/paths.ts). It does not own
// which members a bundle may hold nor how big it may decode (the caller's BundleRules:
// kernelcat, imagecat), where bundles are published (the caller's destDir), or any store
// record: it returns data and never touches SQLite or the CLI.
export { bundleCachePath, defaultMaxUncompressedBytes, fetchBundle, type FetchBundleOptions, type FetchedBundle } from "./fetch.ts";
export type { BundleRules, Member, MemberType } from "./members.ts";
export { makeTarZst, type PackedBundle, type PackOptions } from "./pack.ts";
export {
  archField,
  type Catalog,
  type CatalogEntry,
  type CatalogEntryView,
  catalogEntryView,
  type FieldRule,
  type FieldRules,
  isObject,
  loadCatalogFrom,
  lookupEntry,
  MAX_CATALOG_BYTES,
  nameField,
  parseCatalogText,
  parseCatalogValue,
  pickFields,
  readCatalogSource,
  sizeField,
  textField,
} from "./catalog.ts";
