// Debian's kernel package through apt (`kernel import --debian`): resolve the flavour's
// meta-package (linux-image-cloud-amd64) to the real package (linux-image-6.1.0-N-cloud-amd64)
// and its candidate version, and download it once into a cache directory.
import { mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import { noProgress, type Progress } from "../util/progress.ts";

export type DebianFlavor = "cloud" | "generic";

export interface FetchDebOptions {
  flavor?: DebianFlavor;
  /** Debian architecture name. Default amd64. */
  arch?: "amd64" | "arm64";
  /** Where downloaded packages are kept (and looked for first). */
  cacheDir: string;
  signal?: AbortSignal;
  progress?: Progress;
}

const PACKAGE = /^[a-z0-9][a-z0-9.+-]+$/;

/** The real kernel package and version behind the flavour's meta-package. */
export async function resolveDebianKernel(flavor: DebianFlavor, arch: string, signal?: AbortSignal): Promise<{ pkg: string; version: string }> {
  // Debian's "generic" kernel is the plain linux-image-<arch>.
  const meta = flavor === "cloud" ? `linux-image-cloud-${arch}` : `linux-image-${arch}`;
  const deps = await aptQuery(["apt-cache", "depends", meta], signal);
  const pkg = /Depends: (linux-image-[^\s<>]+)/.exec(deps)?.[1];
  if (!pkg || !PACKAGE.test(pkg)) throw new BangerError(ErrorCode.NotFound, `apt knows no kernel package behind ${meta}`, "run apt-get update, or pass --deb FILE");
  const show = await aptQuery(["apt-cache", "show", "--no-all-versions", pkg], signal);
  const version = /^Version: (\S+)$/m.exec(show)?.[1];
  if (!version) throw new BangerError(ErrorCode.NotFound, `apt has no candidate version of ${pkg}`, "run apt-get update");
  return { pkg, version };
}

/** Path of the cached .deb for the flavour, downloading it with `apt-get download` if needed. */
export async function fetchDebianKernelDeb(opts: FetchDebOptions): Promise<string> {
  const arch = opts.arch ?? "amd64";
  const progress = opts.progress ?? noProgress;
  const { pkg, version } = await resolveDebianKernel(opts.flavor ?? "cloud", arch, opts.signal);
  // apt's own file naming: an epoch's ':' is written %3a.
  const file = join(opts.cacheDir, `${pkg}_${version.replace(/:/g, "%3a")}_${arch}.deb`);
  if ((await stat(file).catch(() => undefined))?.isFile()) return file;
  await mkdir(opts.cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(opts.cacheDir, ".apt-download-"));
  try {
    progress({ phase: "download", message: `${pkg} ${version}` });
    await runChecked(["apt-get", "download", `${pkg}=${version}`], { cwd: tmp, signal: opts.signal, timeoutMs: 15 * 60_000 });
    const debs = (await readdir(tmp)).filter((f) => f.endsWith(".deb"));
    if (debs.length !== 1) throw new BangerError(ErrorCode.Failed, `apt-get download left ${debs.length} packages, expected 1`);
    await rename(join(tmp, debs[0]!), file);
    return file;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function aptQuery(argv: string[], signal?: AbortSignal): Promise<string> {
  try {
    return (await runChecked(argv, { signal, timeoutMs: 60_000 })).stdout;
  } catch (err) {
    if (err instanceof BangerError && err.code === ErrorCode.MissingDependency) throw err;
    throw invalidArgument(`apt could not find ${argv[argv.length - 1]}`, "this needs Debian or Ubuntu with apt; pass --deb FILE instead");
  }
}
