// Pulling: resolve the reference, then bring every layer into the blob cache, three at a
// time in layer order, each verified while it streams. Cancelling (or one layer failing) stops
// the others and leaves only verified blobs behind. startPull hands each layer over as soon as
// its blob is verified, so the caller can flatten layer N while later layers still download.
import { cancelled } from "../util/errors.ts";
import { type Progress, noProgress } from "../util/progress.ts";
import { blobPath, downloadBlob, hasBlob, sweepStaleTemps } from "./blobs.ts";
import type { LayerFile } from "./layer.ts";
import { type ImageConfig, type ResolveOptions, resolveWithClient } from "./manifest.ts";
import type { Platform } from "./platform.ts";
import type { ImageRef } from "./ref.ts";

export interface PullOptions extends ResolveOptions {
  /** Where the blob cache lives (config Paths.cacheDir); blobs go to <cacheDir>/blobs/sha256/<hex>. */
  cacheDir: string;
  progress?: Progress;
  /** Layers downloaded at once. Default 3. */
  concurrency?: number;
}

export interface PulledLayer extends LayerFile {
  digest: string;
  size: number;
  /** diff_id from the config: openLayer checks the uncompressed tar against it. */
  diffId: string;
}

export interface PullResult {
  ref: ImageRef;
  digest: string;
  manifestDigest: string;
  platform: Platform;
  config: ImageConfig;
  /** Cached compressed blobs, in layer order (same as layers[i].path). */
  layerPaths: string[];
  layers: PulledLayer[];
  /** True when no layer had to be downloaded. */
  cached: boolean;
  /** Total compressed layer bytes. */
  bytes: number;
  /** Bytes actually downloaded this time. */
  downloadedBytes: number;
}

/**
 * A pull under way: everything the manifest and config say is known; layers arrive in the
 * background. Lets a caller apply layer N as soon as it is verified while later layers still
 * download.
 */
export interface StartedPull extends Omit<PullResult, "cached" | "downloadedBytes"> {
  /** Resolves once layer `index` is verified in the cache; rejects if the pull fails first. */
  layerReady(index: number): Promise<void>;
  /** Settles when every layer is in the cache, or with the first failure once all downloads stopped. */
  done: Promise<{ cached: boolean; downloadedBytes: number }>;
}

/** Resolves the image, then downloads its layers in the background (see StartedPull). */
export async function startPull(ref: string | ImageRef, opts: PullOptions): Promise<StartedPull> {
  await sweepStaleTemps(opts.cacheDir);
  const { image, client } = await resolveWithClient(ref, opts);
  const progress = opts.progress ?? noProgress;
  const ready = image.layers.map(() => deferred());
  let downloadedBytes = 0;
  const fetchAll = forEachLimited(
    image.layers.map((l, i) => [l, i] as const),
    opts.concurrency ?? 3,
    opts.signal,
    async ([layer, i], signal) => {
      if (await hasBlob(opts.cacheDir, layer)) {
        progress({ phase: "layer", message: layer.digest, done: layer.size, total: layer.size });
      } else {
        await downloadBlob(client, opts.cacheDir, layer, { signal, progress, phase: "layer" });
        downloadedBytes += layer.size;
      }
      ready[i]!.resolve();
    },
  );
  const done = fetchAll.then(
    () => ({ cached: downloadedBytes === 0, downloadedBytes }),
    (err: unknown) => {
      for (const r of ready) r.reject(err); // no-op for layers already verified
      throw err;
    },
  );
  done.catch(() => undefined); // the caller sees it through done or layerReady
  const layers = image.layers.map((l, i) => ({
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    path: blobPath(opts.cacheDir, l.digest),
    diffId: image.config.diffIds[i]!,
  }));
  return {
    ref: image.ref,
    digest: image.digest,
    manifestDigest: image.manifestDigest,
    platform: image.platform,
    config: image.config,
    layerPaths: layers.map((l) => l.path),
    layers,
    bytes: image.layers.reduce((n, l) => n + l.size, 0),
    layerReady: (index) => ready[index]!.promise,
    done,
  };
}

/** Resolves the image and brings every layer into the blob cache. */
export async function pullImage(ref: string | ImageRef, opts: PullOptions): Promise<PullResult> {
  const { layerReady: _ready, done, ...started } = await startPull(ref, opts);
  return { ...started, ...(await done) };
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a layer nobody waits for must not be an unhandled rejection
  return { promise, resolve, reject };
}

/** Runs `fn` over items with at most `limit` at once; the first failure aborts the rest, and all settle before it is thrown. */
async function forEachLimited<T>(items: readonly T[], limit: number, outer: AbortSignal | undefined, fn: (item: T, signal: AbortSignal) => Promise<void>): Promise<void> {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  outer?.addEventListener("abort", onAbort, { once: true });
  if (outer?.aborted) ctl.abort();
  let next = 0;
  let firstError: unknown;
  const worker = async () => {
    while (next < items.length && !ctl.signal.aborted) {
      const item = items[next++]!;
      try {
        await fn(item, ctl.signal);
      } catch (err) {
        firstError ??= err;
        ctl.abort();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  } finally {
    outer?.removeEventListener("abort", onAbort);
  }
  if (outer?.aborted) throw cancelled();
  if (firstError !== undefined) throw firstError;
}
