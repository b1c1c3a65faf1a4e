// Filesystem helpers for "nothing half-written on disk": stage next to the destination,
// publish with one rename, and remove the staging on any failure.
import { lstat, mkdtemp, open, readdir, rename, rm, mkdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { stagingPrefix } from "./scratch.ts";

/** Creates a staging directory beside `dest` (same filesystem, so publishing is a rename). */
export async function makeStagingDir(dest: string): Promise<string> {
  await mkdir(dirname(dest), { recursive: true });
  return mkdtemp(join(dirname(dest), stagingPrefix(basename(dest))));
}

/** Runs `fill(staging)` and renames the staging dir to `dest`; on any error nothing remains. */
export async function publishDir<T>(dest: string, fill: (staging: string) => Promise<T>): Promise<T> {
  const staging = await makeStagingDir(dest);
  try {
    const result = await fill(staging);
    await rename(staging, dest);
    return result;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Flushes every regular file under `path` (or `path` itself) to disk. Installs call it before
 * the rename that publishes: a power cut then finds the whole file or the old one, never an
 * empty one, and the file's allocation is final (ext4 allocates extent blocks at writeback,
 * so st_blocks could still grow after it was reported).
 */
export async function syncTree(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isDirectory()) {
    for (const name of await readdir(path)) await syncTree(join(path, name));
  } else if (st.isFile()) {
    const fh = await open(path, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
