// Pulling a kernel bundle from the catalog into <kernelsDir>/<name>/ and writing its manifest.
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type BundleRules, fetchBundle, type Member } from "../bundle/index.ts";
import { sha256File } from "../util/hash.ts";
import { integrity } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { Progress } from "../util/progress.ts";
import type { KernelCatalogEntry } from "./catalog.ts";

/** What a kernel directory's manifest.json records (and the daemon stores). */
export interface KernelManifest {
  name: string;
  /** "pull:<tarball url>". */
  source: string;
  /** Recomputed from the extracted file, not copied from the catalog. */
  vmlinux_sha256: string;
  kernel_version: string;
  distro?: string;
  arch?: string;
  has_initrd: boolean;
  modules: boolean;
  /** ISO 8601. */
  pulled_at: string;
}

export interface PullKernelOptions {
  kernelsDir: string;
  cacheDir: string;
  tmpDir: string;
  signal?: AbortSignal;
  progress?: Progress;
  maxUncompressedBytes?: number;
}

/** vmlinux, optional initrd.img, optional modules/ tree of files, directories and inside-pointing symlinks. */
export const kernelBundleRules: BundleRules = {
  kind: "kernel bundle",
  required: ["vmlinux"],
  // A kernel, its initrd and a cloud or generic kernel's modules are a few hundred MiB and
  // under 10,000 files; twice that is room, not a 6 GiB or a million-inode "kernel".
  maxDecodedBytes: 1024 ** 3,
  maxMembers: 20_000,
  check: (m: Member) => {
    if (m.path === "vmlinux" || m.path === "initrd.img") return m.type === "file" ? undefined : `${m.path} must be a regular file`;
    if (m.path === "modules") return m.type === "directory" ? undefined : "modules must be a directory";
    if (m.path.startsWith("modules/")) return undefined;
    return "not part of a kernel bundle (vmlinux, initrd.img, modules/)";
  },
};

/**
 * Fetches `entry`'s bundle into `<kernelsDir>/<entry.name>/` (which must not exist), writes
 * manifest.json there and returns it. On any failure nothing is left in kernelsDir.
 */
export async function pullKernelBundle(entry: KernelCatalogEntry, opts: PullKernelOptions): Promise<KernelManifest> {
  const name = validateName("kernel", entry.name);
  const fetched = await fetchBundle({
    url: entry.tarball_url,
    sha256: entry.tarball_sha256,
    sizeBytes: entry.size_bytes,
    destDir: join(opts.kernelsDir, name),
    cacheDir: opts.cacheDir,
    tmpDir: opts.tmpDir,
    rules: kernelBundleRules,
    maxUncompressedBytes: opts.maxUncompressedBytes,
    signal: opts.signal,
    progress: opts.progress,
    finish: (dir) => writeKernelManifest(dir, entry),
  });
  return fetched.result;
}

async function writeKernelManifest(dir: string, entry: KernelCatalogEntry): Promise<KernelManifest> {
  const vmlinux = await sha256File(join(dir, "vmlinux"));
  if (vmlinux.sizeBytes === 0) throw integrity("kernel bundle: vmlinux is empty", "the bundle is broken; nothing was installed");
  const manifest: KernelManifest = {
    name: entry.name,
    source: `pull:${entry.tarball_url}`,
    vmlinux_sha256: vmlinux.sha256,
    kernel_version: entry.kernel_version,
    ...(entry.distro ? { distro: entry.distro } : {}),
    ...(entry.arch ? { arch: entry.arch } : {}),
    has_initrd: await isKind(join(dir, "initrd.img"), "file"),
    modules: await isKind(join(dir, "modules"), "dir"),
    pulled_at: new Date().toISOString(),
  };
  await writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  return manifest;
}

async function isKind(path: string, kind: "file" | "dir"): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return kind === "file" ? st?.isFile() === true : st?.isDirectory() === true;
}
