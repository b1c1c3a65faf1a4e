// Package kernel owns local kernels: `kernel import` of a kernel directory or a Debian/Ubuntu
// linux-image .deb (ar + data.tar parsed here; vmlinux extracted from the bzImage payload:
// gzip, xz, lz4 incl. the legacy frame, zstd), choosing the modules a guest needs by their
// .modinfo dependencies, generating the initramfs (our own newc cpio with the agent as /init;
// at boot, bootInitramfs appends the current agent so old kernels run the daemon's agent), and
// fetching Debian's kernel package through apt for `kernel import --debian`.
//
// A kernel directory `<kernelsDir>/<name>/` holds: vmlinux (ELF), initrd.img (when there are
// modules, or the imported directory had one), modules/<name>.ko (uncompressed, those in the
// initramfs), manifest.json (KernelManifest). It does not own the kernel catalog or bundle
// pulls (kernelcat, bundle), the store rows (daemon), or booting (vmm).
//
// A user's directory or .deb reaches the daemon as an upload (upload.ts): the CLI reads it as
// the user and streams it; the daemon stages it in its own directory and imports that copy,
// so it never opens a path a caller names.
export { importKernel, type ImportKernelOptions, type ImportedKernel, type KernelManifest } from "./import.ts";
export {
  bootInitramfs,
  buildInitramfs,
  removeBootInitramfs,
  type BootInitramfsOptions,
  INITRAMFS_INIT,
  INITRAMFS_MODULES_DIR,
  INITRAMFS_MODULES_LIST,
  INITRAMFS_NEWROOT,
  type BuildInitramfsOptions,
  type InitramfsModule,
} from "./initramfs.ts";
export { extractVmlinux, kernelReleaseOf, locatePayload } from "./bzimage.ts";
export { GUEST_MODULES } from "./modules.ts";
export { cannotRead, openKernelSource, receiveKernelUpload, type KernelSource, type KernelUploadKind } from "./upload.ts";
export { fetchDebianKernelDeb, resolveDebianKernel, type DebianFlavor, type FetchDebOptions } from "./apt.ts";

/** The kernel command line parameter the initramfs agent mounts as the real root (agent/init.go). */
export const ROOT_PARAM = "banger.root";
