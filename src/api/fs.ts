// The vm.fs.* methods: one path's filesystem operations in a running VM (stat, list, mkdir,
// move, remove, read, write, watch), done by the guest agent as the request's user. Paths are
// absolute, or `~`, `~/x` and relative: under that user's home. `user` defaults to where
// commands land (vm.landing's user). The sandbox API's filesystem is built on these.

/** One file's facts (the E2B filesystem API's EntryInfo, in banger's JSON). */
export interface FsEntry {
  name: string;
  /** `other`: a device, socket or fifo. */
  type: "file" | "dir" | "symlink" | "other";
  /** Absolute, as the guest resolved it. */
  path: string;
  sizeBytes: number;
  /** Permission bits (0o7777 at most). */
  mode: number;
  /** As `ls -l` shows them: `-rw-r--r--`, `drwxr-xr-x`. */
  permissions: string;
  /** Names from the guest's /etc/passwd and /etc/group, or the numeric ids. */
  owner: string;
  group: string;
  /** Modification time: seconds since the epoch, and nanoseconds within that second. */
  mtime: { seconds: number; nanos: number };
  /** What a symlink points at (as written in it). */
  symlinkTarget?: string;
}

export type FsEventType = "create" | "write" | "remove" | "rename" | "chmod";

/** A change under a watched directory; `name` is relative to it ("" is the directory itself). */
export interface FsEvent {
  name: string;
  type: FsEventType;
}

/**
 * What vm.fs.read and vm.fs.watch emit: read sends `{t:"size"}` first (the bytes that follow
 * as `out` events), watch sends `{t:"started"}` once watching, then one `{t:"fs"}` per change.
 */
export type FsStreamEvent = { t: "size"; bytes: number } | { t: "started" } | ({ t: "fs" } & FsEvent);

type PathParams = { name: string; path: string; user?: string };

export interface FsMethods {
  /** The path itself (a symlink is not followed). */
  "vm.fs.stat": { params: PathParams; result: FsEntry };
  /** Entries below a directory, `depth` levels down (default 1), never through symlinks. */
  "vm.fs.list": { params: PathParams & { depth?: number }; result: FsEntry[] };
  /** Creates the directory and its parents; AlreadyExists when it is there. */
  "vm.fs.mkdir": { params: PathParams; result: FsEntry };
  /** Renames `path` to `dest`, creating dest's parents. */
  "vm.fs.move": { params: PathParams & { dest: string }; result: FsEntry };
  /** A file, or a directory with everything in it (a symlink alone, never its target). */
  "vm.fs.remove": { params: PathParams; result: { removed: string } };
  /** Streams a regular file: `{t:"size"}`, then its bytes as `out` events. */
  "vm.fs.read": { params: PathParams; result: { bytes: number } };
  /** The call's input (bytes, then eof) replaces the file at `path`, parents created. */
  "vm.fs.write": { params: PathParams; result: FsEntry };
  /** Emits `{t:"started"}`, then `{t:"fs"}` events until cancelled or the directory goes. */
  "vm.fs.watch": { params: PathParams & { recursive?: boolean }; result: { ended: true } };
}
