// The metadata of a root filesystem tree, independent of where its bytes sit.
//
// Flattening OCI layers or reading a `docker export` tar produces a staging directory with
// the file contents plus a list of TreeEntry records: the ownership, modes, device numbers
// and xattrs the files must have inside the image. The staging directory itself is written
// by an unprivileged-safe extractor (so its on-disk owners and modes may be wrong); the
// ext4 builder re-applies every TreeEntry with debugfs, so the image is right whether or not
// the daemon runs as root.

export type TreeEntryType = "file" | "dir" | "symlink" | "hardlink" | "chardev" | "blockdev" | "fifo";

export interface TreeEntry {
  /** Path inside the image, relative, normalised, no leading "/" (e.g. "usr/bin/env"). */
  path: string;
  type: TreeEntryType;
  uid: number;
  gid: number;
  /** Permission bits including setuid/setgid/sticky (e.g. 0o4755); no file-type bits. */
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** symlink: its target as written. hardlink: the path (relative, inside the image) it links to. */
  linkTarget?: string;
  /** chardev / blockdev only. */
  devMajor?: number;
  devMinor?: number;
  /** Extended attributes to set, e.g. { "security.capability": <Buffer> }. */
  xattrs?: Record<string, Buffer>;
}

/** A staging directory plus the metadata its entries must carry in the image. */
export interface Tree {
  dir: string;
  entries: Map<string, TreeEntry>;
}
