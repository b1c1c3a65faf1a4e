// Filesystem helpers for "nothing half-written on disk": stage next to the destination,
// publish with one rename, and remove the staging on any failure.
import { mkdtemp, rename, rm, mkdir } from "node:fs/promises";
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
