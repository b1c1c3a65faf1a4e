// `kernel import`: a kernel directory or a Debian/Ubuntu linux-image .deb becomes a kernel
// directory `<kernelsDir>/<name>/` with vmlinux (ELF), the needed modules, the generated
// initramfs and manifest.json, published with one rename (nothing left on failure).
import { copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { agentBinary, hostAgentArch, type AgentArch } from "../guest/index.ts";
import { requireAgentBinary } from "../rootfs/index.ts";
import { alreadyExists, invalidArgument, throwIfAborted } from "../util/errors.ts";
import { publishDir } from "../util/fsx.ts";
import { sha256File } from "../util/hash.ts";
import { validateName } from "../util/names.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import { extractVmlinux, kernelReleaseOf } from "./bzimage.ts";
import { readKernelDeb } from "./deb.ts";
import { buildInitramfs } from "./initramfs.ts";
import { GUEST_MODULES, collectModules, readBuiltin, scanModuleTree } from "./modules.ts";

export interface KernelManifest {
  name: string;
  /** "import:<absolute path>" (the catalog path records "pull:<url>"). */
  source: string;
  kernel_version: string;
  vmlinux_sha256: string;
  /** Module names in load order; files are modules/<name>.ko. */
  modules: string[];
  has_initrd: boolean;
  /** Wanted modules this kernel neither ships nor lists as built in. */
  modules_not_found?: string[];
}

export interface ImportKernelOptions {
  name: string;
  kernelsDir: string;
  /** The agent that becomes the initramfs /init. Default: the built agent for arch. */
  agentPath?: string;
  arch?: AgentArch;
  /** The path to name in messages and the manifest when `source` is a staged copy (an upload). */
  label?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

export interface ImportedKernel {
  dir: string;
  manifest: KernelManifest;
}

/** What the import produced before publishing. */
interface Parts {
  kernelVersion: string;
  modules: string[];
  notFound: string[];
  hasInitrd: boolean;
}

const MAX_KERNEL_FILE = 256 * 1024 * 1024;

export async function importKernel(source: string, opts: ImportKernelOptions): Promise<ImportedKernel> {
  const name = validateName("kernel", opts.name);
  const dest = join(opts.kernelsDir, name);
  const exists = await stat(dest).catch(() => undefined);
  if (exists) throw alreadyExists(`kernel ${name} already exists`, `remove it first (banger kernel rm ${name}) or pass --force`);
  const src = resolve(source);
  const st = await stat(src).catch(() => undefined);
  if (!st) throw invalidArgument(`${source} does not exist`, "pass a kernel directory or a linux-image-*.deb");
  const agentPath = opts.agentPath ?? agentBinary(opts.arch ?? hostAgentArch());
  const progress = opts.progress ?? noProgress;
  const shown = opts.label ?? src;
  // Replacing an existing kernel is the daemon's journaled swap (daemon/replace.ts), not ours.
  const manifest = await publishDir(dest, async (staging) => {
    const parts = st.isDirectory() ? await importDirectory(src, shown, staging, agentPath, progress, opts.signal) : await importDeb(src, shown, staging, agentPath, progress, opts.signal);
    const m: KernelManifest = {
      name,
      source: `import:${shown}`,
      kernel_version: parts.kernelVersion,
      vmlinux_sha256: (await sha256File(join(staging, "vmlinux"))).sha256,
      modules: parts.modules,
      has_initrd: parts.hasInitrd,
      ...(parts.notFound.length > 0 ? { modules_not_found: parts.notFound } : {}),
    };
    await writeFile(join(staging, "manifest.json"), `${JSON.stringify(m, null, 2)}\n`);
    throwIfAborted(opts.signal);
    return m;
  });
  return { dir: dest, manifest };
}

async function importDeb(deb: string, shown: string, staging: string, agentPath: string, progress: Progress, signal?: AbortSignal): Promise<Parts> {
  const work = join(staging, ".work");
  progress({ phase: "extract", message: shown });
  const contents = await readKernelDeb(deb, work, signal, shown);
  progress({ phase: "vmlinux" });
  await extractVmlinux(contents.vmlinuz, join(staging, "vmlinux"), signal);
  const release = (await kernelReleaseOf(join(staging, "vmlinux"))) ?? contents.vmlinuzVersion;
  if (contents.modulesVersion && contents.modulesVersion !== release) {
    throw invalidArgument(`the package's modules are for ${contents.modulesVersion} but its kernel is ${release}`);
  }
  const parts = await addModulesAndInitrd(contents.modulesDir, staging, agentPath, progress, signal);
  await rm(work, { recursive: true, force: true });
  return { ...parts, kernelVersion: release };
}

async function importDirectory(dir: string, shown: string, staging: string, agentPath: string, progress: Progress, signal?: AbortSignal): Promise<Parts> {
  const vmlinux = join(dir, "vmlinux");
  const vst = await stat(vmlinux).catch(() => undefined);
  if (!vst?.isFile()) throw invalidArgument(`${shown} has no vmlinux`, "a kernel directory holds vmlinux, optionally initrd.img and modules/");
  if (vst.size > MAX_KERNEL_FILE) throw invalidArgument(`${join(shown, "vmlinux")} is larger than ${MAX_KERNEL_FILE} bytes`);
  progress({ phase: "vmlinux" });
  await extractVmlinux(await readFile(vmlinux), join(staging, "vmlinux"), signal);
  const release = await kernelReleaseOf(join(staging, "vmlinux"));
  if (!release) throw invalidArgument(`${join(shown, "vmlinux")} has no "Linux version" string`, "is it a Linux kernel?");
  const modulesDir = join(dir, "modules");
  const hasModules = (await stat(modulesDir).catch(() => undefined))?.isDirectory() ?? false;
  const parts = await addModulesAndInitrd(hasModules ? modulesDir : undefined, staging, agentPath, progress, signal);
  if (!parts.hasInitrd && (await stat(join(dir, "initrd.img")).catch(() => undefined))?.isFile()) {
    // No modules to load: the directory's own initrd is kept as it is.
    await copyFile(join(dir, "initrd.img"), join(staging, "initrd.img"));
    parts.hasInitrd = true;
  }
  return { ...parts, kernelVersion: release };
}

/** Copies the guest's modules into staging/modules and, when there are any, builds initrd.img. */
async function addModulesAndInitrd(tree: string | undefined, staging: string, agentPath: string, progress: Progress, signal?: AbortSignal): Promise<Omit<Parts, "kernelVersion">> {
  if (!tree) return { modules: [], notFound: [], hasInitrd: false };
  progress({ phase: "modules" });
  const available = await scanModuleTree(tree);
  const builtin = await readBuiltinNear(tree);
  const outDir = join(staging, "modules");
  await mkdir(outDir);
  const { order, notFound } = await collectModules(available, builtin, GUEST_MODULES, outDir, signal);
  if (order.length === 0) {
    await rm(outDir, { recursive: true });
    return { modules: [], notFound, hasInitrd: false };
  }
  await requireAgentBinary(agentPath);
  progress({ phase: "initramfs" });
  await buildInitramfs({
    agentPath,
    modules: order.map((n) => ({ name: n, path: join(outDir, `${n}.ko`) })),
    outPath: join(staging, "initrd.img"),
    signal,
  });
  return { modules: order, notFound, hasInitrd: true };
}

/** modules.builtin sits at the tree root, or one level down in a lib/modules/<version>/ layout. */
async function readBuiltinNear(tree: string): Promise<Set<string>> {
  const direct = await readBuiltin(tree);
  if (direct.size > 0) return direct;
  for (const sub of await readdir(tree, { withFileTypes: true })) {
    if (sub.isDirectory()) {
      const inner = await readBuiltin(join(tree, sub.name));
      if (inner.size > 0) return inner;
    }
  }
  return direct;
}
