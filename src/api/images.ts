// Kernels and images on the wire: installed ones, catalog entries, pull results, removals
// and the configured defaults.

/** An installed kernel (kernel.list, kernel.show). */
export interface KernelView {
  name: string;
  source: string;
  kernelVersion: string;
  distro: string;
  arch: string;
  vmlinuxSha256: string;
  hasInitrd: boolean;
  modules: string[];
  sizeBytes: number;
  createdAt: string;
}

/** A kernel just pulled or imported; `becameDefault` when it is the first and now the configured default. */
export type InstalledKernel = KernelView & { becameDefault?: true };

/** An installed image (image.list, image.show); `usedBytes` is what its rootfs takes on disk. */
export interface ImageView {
  name: string;
  source: string;
  digest: string;
  kernelRef: string | null;
  distro: string;
  arch: string;
  sizeBytes: number;
  /** The OCI image config (Entrypoint, Cmd, Env, User, WorkingDir, ...) or {} for bundles. */
  config: Record<string, unknown>;
  createdAt: string;
  usedBytes: number | null;
}

/** image.pull's answer. */
export interface PullResult {
  image: ImageView;
  /** The first image, now the configured default (the CLI says so once). */
  becameDefault?: true;
  via: "catalog" | "oci";
  /** True when nothing had to be done: the same digest was already pulled under this name. */
  unchanged: boolean;
  seconds: number;
  details: PullDetails;
}

/** How a pull went: OCI pulls name the manifest, platform and layers; catalog pulls the bundle. */
export interface PullDetails {
  digest?: string;
  /**
   * "os/arch[/variant]" after a pull; an unchanged pull (same digest already here) sends the
   * OCI platform object as it is (the typed contract found this; kept so --json stays the same).
   */
  platform?: string | { os: string; architecture: string; variant?: string };
  layers?: { digest: string; size: number }[];
  compressedBytes?: number;
  downloadedBytes?: number;
  cached?: boolean;
  /** The catalog bundle's tarball URL. */
  bundle?: string;
}

/** A catalog entry (kernel.catalog, image.catalog). */
export interface CatalogEntryView {
  name: string;
  distro?: string;
  arch?: string;
  tarballUrl: string;
  tarballSha256: string;
  sizeBytes: number;
  description?: string;
}

export interface AvailableKernel extends CatalogEntryView {
  kernelVersion: string;
  state: "pulled" | "available";
}

export interface AvailableImage extends CatalogEntryView {
  kernelRef?: string;
  state: "pulled" | "available";
}

/** kernel.rm / image.rm: what was removed, and the VMs that used it (now unbootable, with --force). */
export interface Removed {
  removed: string;
  broken: string[];
}

/** The configured defaults (defaults.get, defaults.set). */
export interface ConfiguredDefaults {
  image: string | null;
  kernel: string | null;
}

/** defaults.plan: what the first `vm run` would build; empty when the defaults are ready. */
export interface DefaultsPlan {
  steps: { what: "kernel" | "image"; name: string; how: string }[];
}
