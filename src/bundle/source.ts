// Opening a URL as a byte source: http(s) with bounded redirects and an idle timeout (the
// client itself is http.ts), or a file:// URL / plain path (mirrors on disk, the cache).
// Either way the body is read into a ByteSink: straight into the receiver's memory, no
// stream in between. Status codes and transport failures become one clear BangerError; the
// caller bounds and verifies the bytes.
import { open, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { BangerError, ErrorCode, cancelled, invalidArgument, notFound } from "../util/errors.ts";
import { type ByteSink, type HttpResponse, TransportError, httpGet } from "./http.ts";

export type { ByteSink } from "./http.ts";

export interface OpenedSource {
  /** What the server or file system says the size is, when it says. */
  announcedBytes: number | undefined;
  /** Reads the whole body into `sink`; resolves with its length. Errors are BangerErrors, or what the sink threw. */
  readInto(sink: ByteSink): Promise<number>;
  /** Gives up on the body (when it will not be read). */
  close(): void;
}

export interface OpenOptions {
  signal?: AbortSignal;
  /** A connection idle this long fails the transfer. Default 30 s. */
  idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 5;
const FILE_READ_BYTES = 1024 * 1024;

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

/** Opens `url` for reading. The caller reads the body with `readInto` or gives up with `close`. */
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
  const fh = await open(path, "r");
  let closed = false;
  const close = () => {
    if (!closed) void fh.close().catch(() => undefined);
    closed = true;
  };
  const readInto = async (sink: ByteSink): Promise<number> => {
    try {
      for (let total = 0; ; ) {
        if (signal?.aborted) throw cancelled();
        const room = sink.space();
        const { bytesRead } = await fh.read(room, 0, Math.min(room.length, FILE_READ_BYTES), null);
        if (bytesRead === 0) return total;
        total += bytesRead;
        await sink.commit(bytesRead);
      }
    } finally {
      close();
    }
  };
  return { announcedBytes: st.size, readInto, close };
}

async function openHttp(url: URL, opts: OpenOptions, redirects: number): Promise<OpenedSource> {
  const idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
  let res: HttpResponse;
  try {
    res = await httpGet(url, { signal: opts.signal, idleTimeoutMs });
  } catch (err) {
    throw transportError(url, err, opts.signal);
  }
  if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
    res.destroy();
    const next = nextRedirect(url, res.headers.get("location")!, redirects);
    if (next instanceof Error) throw next;
    return openHttp(next, opts, redirects + 1);
  }
  if (res.status !== 200) {
    res.destroy();
    throw httpStatusError(url, res.status);
  }
  return {
    announcedBytes: res.contentLength,
    // The connection's failures are named after the URL; the sink's own pass through.
    readInto: (sink) =>
      res.readInto(sink).catch((err: unknown) => {
        throw err instanceof TransportError ? transportError(url, err, opts.signal) : err;
      }),
    close: () => res.destroy(),
  };
}

/** Reads a whole body of at most `max` bytes; `tooLarge` makes the error for a larger one. */
export async function readAllBounded(src: OpenedSource, max: number, tooLarge: () => Error): Promise<Buffer> {
  let buf = Buffer.allocUnsafe(Math.min(max + 1, 64 * 1024));
  let fill = 0;
  await src.readInto({
    space: () => {
      if (fill === buf.length) {
        const bigger = Buffer.allocUnsafe(Math.min(max + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, fill);
        buf = bigger;
      }
      return buf.subarray(fill);
    },
    commit: (n) => {
      fill += n;
      if (fill > max) throw tooLarge();
      return undefined;
    },
  });
  return buf.subarray(0, fill);
}

function nextRedirect(from: URL, location: string, redirects: number): URL | BangerError {
  if (redirects >= MAX_REDIRECTS) return new BangerError(ErrorCode.Unavailable, `${from.href}: more than ${MAX_REDIRECTS} redirects`);
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    return new BangerError(ErrorCode.Unavailable, `${from.href}: redirect to an invalid location ${JSON.stringify(location.slice(0, 200))}`);
  }
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
  const what = e.code ?? e.message;
  const hint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(what)
    ? "the server's TLS certificate is not trusted here; for a private CA, set NODE_EXTRA_CA_CERTS to its PEM file in bangerd's environment"
    : "check the network or the mirror, then retry";
  return new BangerError(ErrorCode.Unavailable, `GET ${url.href}: ${what}`, hint);
}
