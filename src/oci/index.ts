// Package oci is banger's OCI / Docker registry v2 client.
//
// It owns: parsing image references with Docker's rules; talking to registries (scheme
// policy, basic auth, the bearer-token flow, Docker config credentials, retries); resolving
// tags to digests through OCI indexes and Docker manifest lists with platform selection;
// reading the image config; and the content-addressed blob cache under
// <cacheDir>/blobs/sha256, where every blob is verified against its digest while it streams.
// It also opens cached layers as tar streams (gzip, zstd, uncompressed).
// It does not own: applying layers to a tree (rootfs/flatten), building disks (rootfs),
// storing images (store/daemon) or deciding between catalog and registry (daemon).
export { parseRef, formatRef, isLoopbackRegistry, type ImageRef } from "./ref.ts";
export { parsePlatform, formatPlatform, hostPlatform, type Platform } from "./platform.ts";
export { dockerConfigPath, dockerCredentials, sharedTokenCache, TokenCache, type Credentials } from "./auth.ts";
export { RegistryClient, type ClientOptions } from "./http.ts";
export { resolveImage, MediaType, type ResolveOptions, type ResolvedImage, type ImageConfig, type ImageManifest, type Descriptor } from "./manifest.ts";
export { pullImage, startPull, type PullOptions, type PullResult, type PulledLayer, type StartedPull } from "./pull.ts";
export { openLayer, layerCompression, type LayerFile } from "./layer.ts";
export { blobPath, hasBlob } from "./blobs.ts";
