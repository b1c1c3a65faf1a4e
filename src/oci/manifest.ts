// Manifests and image configs: the four manifest media types (OCI index, Docker manifest
// list, OCI image manifest, Docker schema2), platform selection, digest verification of
// every document, and the parts of the image config a VM needs (Entrypoint, Cmd, Env, ...).
import { BangerError, ErrorCode, integrity } from "../util/errors.ts";
import { checkDigest, fetchSmallBlob, readCachedBlob, sha256Digest, storeBlob } from "./blobs.ts";
import { type ClientOptions, RegistryClient, readBounded } from "./http.ts";
import { layerCompression } from "./layer.ts";
import { type Platform, formatPlatform, hostPlatform, parsePlatform, platformMatches, selectPlatform } from "./platform.ts";
import { type ImageRef, formatRef, parseRef } from "./ref.ts";

export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.dockerList, MediaType.ociManifest, MediaType.dockerManifest];

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
const MAX_LAYERS = 256;
const MAX_LAYER_BYTES = 64 * 1024 ** 3;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
}

export interface ImageManifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** What a VM needs from the image config (names as in the OCI spec, normalised). */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  /** e.g. ["80/tcp", "53/udp"]. */
  exposedPorts: string[];
  os: string;
  architecture: string;
  variant?: string;
  /** sha256 of each uncompressed layer tar, in layer order. */
  diffIds: string[];
}

export interface ResolveOptions extends ClientOptions {
  /** "os/arch[/variant]" or a Platform; default the host's (linux/amd64 on x86-64). */
  platform?: string | Platform;
  /** When set, manifests and configs by digest are read from and written to the blob cache. */
  cacheDir?: string;
}

export interface ResolvedImage {
  ref: ImageRef;
  /** Digest the reference resolved to (the index's when it was an index): use it as ref@digest. */
  digest: string;
  /** Digest of the platform-specific image manifest (equals `digest` for a single manifest). */
  manifestDigest: string;
  platform: Platform;
  manifest: ImageManifest;
  config: ImageConfig;
  layers: Descriptor[];
}

type Document = { kind: "index"; manifests: Descriptor[] } | { kind: "manifest"; manifest: ImageManifest };

/** Resolves a reference to one platform's manifest and config, every document digest-checked. */
export async function resolveImage(refText: string | ImageRef, opts: ResolveOptions = {}): Promise<ResolvedImage> {
  return (await resolveWithClient(refText, opts)).image;
}

/** resolveImage plus the client it used, so a pull reuses its tokens (kept out of the result: it holds credentials). */
export async function resolveWithClient(refText: string | ImageRef, opts: ResolveOptions): Promise<{ image: ResolvedImage; client: RegistryClient }> {
  const ref = typeof refText === "string" ? parseRef(refText) : refText;
  const explicit = opts.platform === undefined ? undefined : typeof opts.platform === "string" ? parsePlatform(opts.platform) : opts.platform;
  const want = explicit ?? hostPlatform();
  const client = new RegistryClient(ref.registry, ref.repository, opts);
  const top = await fetchManifest(client, ref.digest ?? ref.tag!, opts, formatRef(ref));
  let doc = parseDocument(top.bytes, top.contentType, formatRef(ref));
  let manifestDigest = top.digest;
  if (doc.kind === "index") {
    const pick = selectPlatform(doc.manifests, want);
    if (!pick) throw noPlatform(ref, want, doc.manifests);
    const child = await fetchManifest(client, pick.digest, opts, `${formatRef(ref)} for ${formatPlatform(want)}`);
    doc = parseDocument(child.bytes, child.contentType, child.digest);
    if (doc.kind !== "manifest") throw integrity(`${formatRef(ref)}: an index entry points at another index`, "nested indexes are not supported");
    manifestDigest = child.digest;
  }
  const manifest = doc.manifest;
  const configBytes = await fetchSmallBlob(client, opts.cacheDir, manifest.config, MAX_CONFIG_BYTES, `config of ${formatRef(ref)}`, opts.signal);
  const config = parseImageConfig(configBytes, formatRef(ref));
  const platform: Platform = { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
  if (explicit && config.architecture && !platformMatches(explicit, platform, false)) {
    throw new BangerError(ErrorCode.NotFound, `${formatRef(ref)} is ${formatPlatform(platform)}, not ${formatPlatform(explicit)}`, "pick another --platform or another image");
  }
  if (config.diffIds.length !== manifest.layers.length) {
    throw integrity(`${formatRef(ref)}: the config lists ${config.diffIds.length} layers but the manifest has ${manifest.layers.length}`);
  }
  return { image: { ref, digest: top.digest, manifestDigest, platform, manifest, config, layers: manifest.layers }, client };
}

function noPlatform(ref: ImageRef, want: Platform, entries: Descriptor[]): BangerError {
  const have = entries.filter((e) => e.platform && e.platform.os !== "unknown").map((e) => formatPlatform(e.platform!));
  return new BangerError(ErrorCode.NotFound, `${formatRef(ref)} has no ${formatPlatform(want)} image (it has: ${have.join(", ") || "none"})`, "pass --platform with one of those");
}

/** GETs a manifest by tag or digest; verifies the bytes against the digest asked for and Docker-Content-Digest. */
async function fetchManifest(client: RegistryClient, reference: string, opts: ResolveOptions, what: string): Promise<{ bytes: Buffer; digest: string; contentType: string }> {
  const byDigest = reference.startsWith("sha256:");
  if (byDigest && opts.cacheDir) {
    const bytes = await readCachedBlob(opts.cacheDir, reference, MAX_MANIFEST_BYTES);
    if (bytes) return { bytes, digest: reference, contentType: "" };
  }
  const bytes = await client.withRetries(async () => {
    const res = await client.get(`manifests/${reference}`, { accept: MANIFEST_ACCEPT, what: `manifest ${what}`, signal: opts.signal });
    const body = await readBounded(res, MAX_MANIFEST_BYTES, `manifest ${what}`);
    return { body, contentType: res.headers.get("content-type") ?? "", header: res.headers.get("docker-content-digest") };
  }, opts.signal);
  const digest = sha256Digest(bytes.body);
  if (byDigest && digest !== reference) throw integrity(`manifest ${what} does not match its digest (got ${digest})`, "the registry served corrupt data");
  if (bytes.header?.startsWith("sha256:") && bytes.header !== digest) {
    throw integrity(`manifest ${what}: Docker-Content-Digest says ${bytes.header} but the bytes are ${digest}`, "the registry served corrupt data");
  }
  if (opts.cacheDir) await storeBlob(opts.cacheDir, digest, bytes.body);
  return { bytes: bytes.body, digest, contentType: bytes.contentType.split(";")[0]!.trim() };
}

/** Parses and validates a manifest or index document (untrusted JSON). */
export function parseDocument(bytes: Buffer, contentType: string, what: string): Document {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw integrity(`manifest ${what} is not valid JSON`);
  }
  if (typeof json !== "object" || json === null) throw integrity(`manifest ${what} is not a JSON object`);
  const mediaType = typeof json.mediaType === "string" ? json.mediaType : contentType;
  if (mediaType.startsWith("application/vnd.docker.distribution.manifest.v1")) throw integrity(`${what} is a Docker schema 1 manifest`, "schema 1 is deprecated and not supported; re-push the image");
  const isIndex = mediaType === MediaType.ociIndex || mediaType === MediaType.dockerList || (!mediaType.includes("manifest.v") && Array.isArray(json.manifests));
  if (isIndex) {
    if (!Array.isArray(json.manifests) || json.manifests.length > 1024) throw integrity(`index ${what} has no valid "manifests" list`);
    return { kind: "index", manifests: json.manifests.map((d, i) => parseDescriptor(d, `${what} entry ${i}`, true)) };
  }
  if (mediaType && mediaType !== MediaType.ociManifest && mediaType !== MediaType.dockerManifest && mediaType !== "application/json") {
    throw integrity(`${what} has unsupported media type ${JSON.stringify(mediaType.slice(0, 100))}`);
  }
  if (!Array.isArray(json.layers) || json.layers.length > MAX_LAYERS) throw integrity(`manifest ${what} has no valid "layers" list (at most ${MAX_LAYERS})`);
  const layers = json.layers.map((d, i) => parseDescriptor(d, `${what} layer ${i}`, false));
  for (const layer of layers) {
    layerCompression(layer.mediaType);
    if (layer.size > MAX_LAYER_BYTES) throw integrity(`${what}: layer ${layer.digest} declares ${layer.size} bytes, over the limit`);
  }
  return { kind: "manifest", manifest: { mediaType: mediaType || MediaType.ociManifest, config: parseDescriptor(json.config, `${what} config`, false), layers } };
}

function parseDescriptor(raw: unknown, what: string, withPlatform: boolean): Descriptor {
  if (typeof raw !== "object" || raw === null) throw integrity(`${what} is not an object`);
  const d = raw as Record<string, unknown>;
  const digest = checkDigest(d.digest, what);
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) throw integrity(`${what} has an invalid size`);
  const mediaType = typeof d.mediaType === "string" ? d.mediaType : "";
  const out: Descriptor = { mediaType, digest, size: d.size };
  if (withPlatform && typeof d.platform === "object" && d.platform !== null) {
    const p = d.platform as Record<string, unknown>;
    if (typeof p.os === "string" && typeof p.architecture === "string") {
      out.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === "string" && p.variant ? { variant: p.variant } : {}) };
    }
  }
  return out;
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

/** Extracts the runtime defaults and layer diff_ids from an image config blob. */
export function parseImageConfig(bytes: Buffer, what: string): ImageConfig {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw integrity(`image config of ${what} is not valid JSON`);
  }
  if (typeof json !== "object" || json === null) throw integrity(`image config of ${what} is not an object`);
  const c = (typeof json.config === "object" && json.config !== null ? json.config : {}) as Record<string, unknown>;
  const rootfs = (typeof json.rootfs === "object" && json.rootfs !== null ? json.rootfs : {}) as Record<string, unknown>;
  const diffIds = strings(rootfs.diff_ids);
  diffIds.forEach((d, i) => void checkDigest(d, `${what} diff_id ${i}`));
  const ports = typeof c.ExposedPorts === "object" && c.ExposedPorts !== null ? Object.keys(c.ExposedPorts) : [];
  return {
    entrypoint: strings(c.Entrypoint),
    cmd: strings(c.Cmd),
    env: strings(c.Env),
    workingDir: typeof c.WorkingDir === "string" ? c.WorkingDir : "",
    user: typeof c.User === "string" ? c.User : "",
    exposedPorts: ports.filter((p) => /^\d{1,5}(\/(tcp|udp|sctp))?$/.test(p)),
    os: typeof json.os === "string" ? json.os : "",
    architecture: typeof json.architecture === "string" ? json.architecture : "",
    ...(typeof json.variant === "string" && json.variant ? { variant: json.variant } : {}),
    diffIds,
  };
}
