// Package kernelcat owns the kernel catalog: the catalog.json built into banger (or the
// override that replaces it: BANGER_KERNEL_CATALOG / config `kernel_catalog`, a path or an
// http(s)/file URL), looking entries up by name, what a kernel bundle may contain (vmlinux,
// optional initrd.img, optional modules/ tree) and pulling one into <kernelsDir>/<name>/
// with a manifest.json that records the recomputed vmlinux sha256 and the source.
//
// It does not own downloading or extraction (bundle), the store records of kernels or the
// --force / in-use policies (daemon), nor `kernel import` (kernel). It returns data only.
export { type KernelCatalog, type KernelCatalogEntry, loadCatalog, lookup, parseCatalog } from "./catalog.ts";
export { kernelBundleRules, type KernelManifest, pullKernelBundle, type PullKernelOptions } from "./pull.ts";
