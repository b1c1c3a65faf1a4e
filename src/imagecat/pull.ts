// Pulling an image bundle from the catalog into <imagesDir>/<name>/: exactly rootfs.ext4 and
// manifest.json, both regular files; the manifest is validated and the rootfs must carry an
// ext2/3/4 superblock before anything is published.
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { archField, type BundleRules, fetchBundle, type FieldRules, isObject, nameField, pickFields, textField } from "../bundle/index.ts";
import { integrity } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { Progress } from "../util/progress.ts";
import type { ImageCatalogEntry } from "./catalog.ts";

/** manifest.json inside an image bundle (written by make-bundle). */
export interface ImageBundleManifest {
  name: string;
  distro?: string;
  arch?: string;
  kernel_ref?: string;
  description?: string;
}

export interface PulledImage {
  /** The published directory: <imagesDir>/<name>. */
  dir: string;
  rootfs: string;
  manifest: ImageBundleManifest;
  /** True when the bundle came from the download cache. */
  cached: boolean;
}

export interface PullImageOptions {
  imagesDir: string;
  cacheDir: string;
  tmpDir: string;
  /** Publish under this name instead of the entry's (image pull --name). */
  name?: string;
  signal?: AbortSignal;
  progress?: Progress;
  maxUncompressedBytes?: number;
}

const IMAGE_MEMBERS = ["rootfs.ext4", "manifest.json"];

export const imageBundleRules: BundleRules = {
  kind: "image bundle",
  required: IMAGE_MEMBERS,
  // The ext4 decodes whole, zero blocks included (they become holes on disk), so the cap is
  // the largest image size banger makes a bundle of, not its data; two files and the root.
  maxDecodedBytes: 64 * 1024 ** 3,
  maxMembers: 8,
  check: (m) => {
    if (!IMAGE_MEMBERS.includes(m.path)) return "an image bundle holds only rootfs.ext4 and manifest.json";
    return m.type === "file" ? undefined : `${m.path} must be a regular file`;
  },
};

/** Fetches `entry`'s bundle into `<imagesDir>/<name>/` (which must not exist). Nothing is left on failure. */
export async function pullImageBundle(entry: ImageCatalogEntry, opts: PullImageOptions): Promise<PulledImage> {
  const name = validateName("image", opts.name ?? entry.name);
  const dir = join(opts.imagesDir, name);
  const fetched = await fetchBundle({
    url: entry.tarball_url,
    sha256: entry.tarball_sha256,
    sizeBytes: entry.size_bytes,
    destDir: dir,
    cacheDir: opts.cacheDir,
    tmpDir: opts.tmpDir,
    rules: imageBundleRules,
    maxUncompressedBytes: opts.maxUncompressedBytes,
    signal: opts.signal,
    progress: opts.progress,
    finish: async (staging) => {
      await checkExt4(join(staging, "rootfs.ext4"));
      return readImageManifest(join(staging, "manifest.json"));
    },
  });
  return { dir, rootfs: join(dir, "rootfs.ext4"), manifest: fetched.result, cached: fetched.cached };
}

const MAX_MANIFEST_BYTES = 64 * 1024;
const MANIFEST_FIELDS: FieldRules = {
  name: { required: true, check: nameField },
  distro: { required: false, check: textField(64) },
  arch: { required: false, check: archField },
  kernel_ref: { required: false, check: nameField },
  description: { required: false, check: textField(1024) },
};

function badManifest(message: string) {
  return integrity(`image bundle: manifest.json: ${message}`, "the bundle is broken; nothing was installed");
}

/** Reads and validates an image bundle's manifest.json; unknown fields are dropped. */
export async function readImageManifest(path: string): Promise<ImageBundleManifest> {
  const buf = await readFile(path);
  if (buf.length > MAX_MANIFEST_BYTES) throw badManifest(`larger than ${MAX_MANIFEST_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(buf.toString("utf8"));
  } catch (err) {
    throw badManifest(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw badManifest("expected a JSON object");
  return pickFields(raw, MANIFEST_FIELDS, (key, problem) => badManifest(`${key}: ${problem}`)) as unknown as ImageBundleManifest;
}

/** ext2/3/4 keep the magic 0xEF53 at byte 1080 (superblock at 1024, s_magic at +56). */
async function checkExt4(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(2);
    const { bytesRead } = await fh.read(buf, 0, 2, 1080);
    if (bytesRead !== 2 || buf.readUInt16LE(0) !== 0xef53) throw integrity("image bundle: rootfs.ext4 is not an ext4 filesystem", "the bundle is broken; nothing was installed");
  } finally {
    await fh.close();
  }
}
