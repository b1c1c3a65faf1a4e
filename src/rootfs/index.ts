// Package rootfs owns turning a root filesystem into a bootable ext4 image: reading a
// `docker export`-style tar (extract.ts) or flattening OCI layers in order, whiteouts
// included (flatten.ts: flattenLayers), into a staging directory plus Tree metadata (hardened: names checked by the shared path rule in util/paths.ts, no path
// escapes, never writing through symlinks, bounded), building the ext4 with `mkfs.ext4 -d`
// and re-applying ownership, modes, devices and xattrs with one `debugfs` pass (works without
// root; debugfs.ts says why image names in its script are inert), injecting the guest agent,
// and make-bundle (image and kernel `.tar.zst` bundles).
//
// It does not own pulling OCI images or opening their layers (src/oci: it hands flattenLayers
// the layer streams), fetching or unpacking bundles (src/bundle), the image catalog
// (imagecat), where images are stored (daemon, store), or building the agent binary
// (agent/build.sh).
export type { Tree, TreeEntry, TreeEntryType } from "./tree.ts";
export { extractRootfsTar, type ExtractOptions } from "./extract.ts";
export { flattenLayers, type FlattenOptions, type LayerSource } from "./flatten.ts";
export { buildExt4, estimateImage, fillExt4, type BuildExt4Options, type FillExt4Options } from "./ext4.ts";
export {
  AGENT_IMAGE_PATH,
  BOOT_FILES_DIR,
  injectAgent,
  requireAgentBinary,
  resolveInTree,
} from "./agent.ts";
export {
  IMAGE_MANIFEST_VERSION,
  makeBundle,
  makeKernelBundle,
  type ImageManifest,
  type MadeBundle,
  type MadeKernelBundle,
  type MakeBundleOptions,
  type MakeKernelBundleOptions,
} from "./bundle.ts";
