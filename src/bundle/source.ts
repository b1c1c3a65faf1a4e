// Opening a URL as a byte stream: http(s) with bounded redirects and an idle timeout, or a
// file:// URL / plain path (mirrors on disk). Status codes and transport failures become one
// clear BangerError; the caller reads, bounds and verifies the bytes.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { BangerError, ErrorCode, cancelled, invalidArgument, notFound } from "../util/errors.ts";

export interface OpenedSource {
  body: Readable;
  /** What the server or file system says the size is, when it says. */
  announcedBytes: number | undefined;
}

export interface OpenOptions {
  signal?: AbortSignal;
  /** A connection idle this long fails the transfer. Default 30 s. */
  idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 5;
const READ_CHUNK = 1024 * 1024;

/**
 * Parses `location` as an http(s) or file URL. Without a base, anything that does not start
 * with a scheme is a file path; with one (a catalog's own URL), relative locations resolve
 * against it, so a mirror can list bundles next to its catalog.json.
 */
export function parseSourceUrl(location: string, base?: string): URL {
  let url: URL;
  try {
    url = base === undefined && !/^[a-z][a-z0-9+.-]*:/i.test(location) ? pathToFileURL(resolve(location)) : new URL(location, base);
  } catch {
    throw invalidArgument(`not a valid URL: ${JSON.stringify(location)}`);
  }
  if (!["http:", "https:", "file:"].includes(url.protocol)) {
    throw invalidArgument(`unsupported URL scheme ${url.protocol} in ${JSON.stringify(location)}: use http, https or file`);
  }
  return url;
}

/** Opens `url` for reading. The returned body must be consumed or destroyed by the caller. */
export async function openSource(url: URL, opts: OpenOptions = {}): Promise<OpenedSource> {
  if (opts.signal?.aborted) throw cancelled();
  if (url.protocol === "file:") return openFile(fileURLToPath(url), opts.signal);
  return openHttp(url, opts, 0);
}

async function openFile(path: string, signal: AbortSignal | undefined): Promise<OpenedSource> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw err.code === "ENOENT" ? notFound(path) : new BangerError(ErrorCode.Unavailable, `cannot read ${path}: ${err.message}`);
  });
  if (!st.isFile()) throw invalidArgument(`${path} is not a regular file`);
  return { body: createReadStream(path, { highWaterMark: READ_CHUNK, signal }), announcedBytes: st.size };
}

function openHttp(url: URL, opts: OpenOptions, redirects: number): Promise<OpenedSource> {
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.get(url, { signal: opts.signal, timeout: opts.idleTimeoutMs ?? 30_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        const next = nextRedirect(url, res.headers.location, redirects);
        if (next instanceof Error) return reject(next);
        return resolve(openHttp(next, opts, redirects + 1));
      }
      if (status !== 200) {
        res.resume();
        return reject(httpStatusError(url, status));
      }
      const length = Number(res.headers["content-length"]);
      resolve({ body: res, announcedBytes: Number.isSafeInteger(length) && length >= 0 ? length : undefined });
    });
    req.on("timeout", () => req.destroy(new BangerError(ErrorCode.Timeout, `${url.host}: no data for ${(opts.idleTimeoutMs ?? 30_000) / 1000} s`, "check the network or the mirror, then retry")));
    req.on("error", (err) => reject(transportError(url, err, opts.signal)));
  });
}

function nextRedirect(from: URL, location: string, redirects: number): URL | BangerError {
  if (redirects >= MAX_REDIRECTS) return new BangerError(ErrorCode.Unavailable, `${from.href}: more than ${MAX_REDIRECTS} redirects`);
  const next = new URL(location, from);
  // Never follow a redirect from TLS to plain text, nor to a file on this host.
  if (next.protocol !== "https:" && (from.protocol === "https:" || next.protocol !== "http:")) {
    return new BangerError(ErrorCode.Unavailable, `${from.href}: refusing redirect to ${next.protocol}//${next.host}`);
  }
  return next;
}

function httpStatusError(url: URL, status: number): BangerError {
  const hint = status === 404 ? "the catalog entry points at a missing file; update the catalog or its override" : "retry later or use a mirror (catalog override)";
  return new BangerError(ErrorCode.Unavailable, `GET ${url.href}: HTTP ${status}`, hint);
}

/** Maps a request/response failure to a BangerError (cancellation stays cancellation). */
export function transportError(url: URL, err: unknown, signal?: AbortSignal): BangerError {
  if (signal?.aborted) return cancelled();
  if (err instanceof BangerError) return err;
  const e = err as NodeJS.ErrnoException;
  return new BangerError(ErrorCode.Unavailable, `GET ${url.href}: ${e.code ?? e.message}`, "check the network or the mirror, then retry");
}
