// Package imagecat owns the image catalog: the catalog.json built into banger (or the override
// that replaces it: BANGER_IMAGE_CATALOG / config `image_catalog`, a path or an http(s)/file
// URL), looking a ref up (a miss means `image pull` falls through to OCI), what an image
// bundle may contain (exactly rootfs.ext4 and manifest.json) and pulling one into
// <imagesDir>/<name>/ with its manifest validated.
//
// It does not own downloading or extraction (bundle), kernel resolution or store records
// (daemon), nor building bundles (rootfs make-bundle). It returns data only.
export { type ImageCatalog, type ImageCatalogEntry, loadCatalog, lookup, lookupName, parseCatalog } from "./catalog.ts";
export { type ImageBundleManifest, imageBundleRules, type PulledImage, pullImageBundle, type PullImageOptions, readImageManifest } from "./pull.ts";
