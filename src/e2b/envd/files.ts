// envd's /files (envd.yaml): GET downloads one file, POST uploads one or several
// (multipart/form-data, or the raw body as application/octet-stream, gzip allowed) and
// answers the EntryInfo list the SDK parses. Both stream through the daemon's vm.fs.read /
// vm.fs.write (in process, rpc's callLocal) with flow control: no file is held whole here.
import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { posix } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { INPUT_CHUNK_BYTES, INPUT_WINDOW_BYTES, type FsStreamEvent, type StreamEvent, type StreamInput } from "../../api/index.ts";
import { InputQueue } from "../../rpc/index.ts";
import type { EnvdDeps, EnvdSandbox } from "./context.ts";
import { callDaemon, checkUser, sandboxOf, toHttpError } from "./filesystem-shared.ts";
import { MultipartError, chunksOf, multipartBoundary, readMultipart } from "./files-multipart.ts";

/** The most one POST /files may carry (all its files; a gzip body's, inflated). */
export const MAX_UPLOAD_BYTES = 16 * 1024 ** 3;

export interface FilesLimits {
  maxUploadBytes: number;
}

/** What POST /files answers per file (envd's UploadSuccess items). */
interface Written {
  name: string;
  type: "file";
  path: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function handleFiles(deps: EnvdDeps, req: IncomingMessage, res: ServerResponse, limits: FilesLimits = { maxUploadBytes: MAX_UPLOAD_BYTES }): Promise<void> {
  const ac = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) ac.abort();
  });
  try {
    const url = new URL(req.url ?? "/", "http://envd");
    const sandbox = await sandboxOfRequest(deps, req);
    const user = checkUser(url.searchParams.get("username"));
    const path = url.searchParams.get("path") ?? undefined;
    if (req.method === "GET") return await download(deps, sandbox, user, path, res, ac.signal);
    if (req.method === "POST") {
      const written = await upload(deps, sandbox, user, path, req, limits.maxUploadBytes, ac.signal);
      return sendJson(res, 200, written);
    }
    throw new HttpError(405, `method ${req.method} not allowed on /files`);
  } catch (err) {
    sendError(res, err);
  } finally {
    req.resume(); // whatever of the body was not read (an upload refused early, the epilogue) is discarded
  }
}

/** The request's sandbox (one that is gone: 502, as E2B's proxy answers). */
async function sandboxOfRequest(deps: EnvdDeps, req: IncomingMessage): Promise<EnvdSandbox> {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v === "string") headers.set(k, v);
    else if (Array.isArray(v)) for (const x of v) headers.append(k, x);
  }
  return sandboxOf(deps, headers);
}

async function download(deps: EnvdDeps, sandbox: EnvdSandbox, user: string | undefined, path: string | undefined, res: ServerResponse, signal: AbortSignal): Promise<void> {
  if (!path) throw new HttpError(400, "path is required");
  await callDaemon(
    deps,
    "vm.fs.read",
    { name: sandbox.vm, user, path },
    {
      signal,
      emit: async (raw) => {
        const ev = raw as FsStreamEvent | StreamEvent;
        if (ev.t === "size") {
          res.writeHead(200, {
            "content-type": "application/octet-stream",
            "content-length": String(ev.bytes),
            "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(posix.basename(path))}`,
          });
        } else if (ev.t === "out" && !res.write(ev.data)) {
          await Promise.race([once(res, "drain"), once(res, "close")]);
        }
      },
    },
  );
  res.end();
}

async function upload(deps: EnvdDeps, sandbox: EnvdSandbox, user: string | undefined, path: string | undefined, req: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<Written[]> {
  const written: Written[] = [];
  const write = async (dest: string | undefined, body: Readable) => {
    if (!dest) throw new HttpError(400, "no path for the uploaded file: give the path parameter or a filename");
    if (written.some((w) => w.path === dest || posix.normalize(w.path) === posix.normalize(dest))) {
      throw new HttpError(400, `you cannot upload multiple files to the same path '${dest}' in one upload request`);
    }
    const entry = await writeFile(deps, { name: sandbox.vm, user, path: dest }, body, maxBytes, signal);
    written.push({ name: entry.name, type: "file", path: entry.path });
  };
  const boundary = multipartBoundary(req.headers["content-type"]);
  try {
    if (boundary) {
      await readMultipart(req, boundary, maxBytes, async (part) => {
        if (part.name !== "file") return void part.body.resume();
        await write(path ?? part.filename, part.body);
      });
    } else {
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared > maxBytes) throw new HttpError(400, `upload larger than ${maxBytes} bytes`);
      await write(path, /^\s*gzip\s*$/i.test(req.headers["content-encoding"] ?? "") ? gunzipped(req) : req);
    }
  } catch (err) {
    if (err instanceof MultipartError) throw new HttpError(400, err.message);
    throw err;
  }
  if (written.length === 0) throw new HttpError(400, "no file in the upload");
  return written;
}

/**
 * Streams body into vm.fs.write's input: chunks of up to INPUT_CHUNK_BYTES, at most
 * INPUT_WINDOW_BYTES not yet acknowledged by the daemon (so neither side buffers more).
 */
async function writeFile(deps: EnvdDeps, params: { name: string; user: string | undefined; path: string }, body: Readable, maxBytes: number, signal: AbortSignal) {
  const input = new InputQueue<StreamInput>();
  const ac = new AbortController();
  const abort = () => ac.abort();
  signal.addEventListener("abort", abort, { once: true });
  let inflight = 0;
  let wake: () => void = () => undefined;
  let finished = false;
  const call = callDaemon(deps, "vm.fs.write", params, {
    signal: ac.signal,
    input,
    emit: (raw) => {
      const ev = raw as StreamEvent;
      if (ev.t === "ack") {
        inflight -= ev.n;
        wake();
      }
    },
  });
  call.then(
    () => ((finished = true), wake()),
    () => ((finished = true), wake()),
  );
  const send = async (data: Buffer) => {
    while (!finished && inflight > 0 && inflight + data.length > INPUT_WINDOW_BYTES) await new Promise<void>((r) => (wake = r));
    if (finished) return;
    inflight += data.length;
    if (!input.push({ t: "in", data })) throw new HttpError(500, "the daemon did not take the upload");
  };
  const pump = async () => {
    let batch: Buffer[] = [];
    let size = 0;
    let total = 0;
    const chunks = chunksOf(body);
    for (;;) {
      const { value: b, done } = await chunks.next();
      if (done) break;
      if (finished) return; // the write failed: stop reading (the caller discards the rest)
      // What is counted is what the guest gets: a chunked or gzip body has no length to check up front.
      total += b.length;
      if (total > maxBytes) throw new HttpError(400, `upload larger than ${maxBytes} bytes`);
      batch.push(b);
      size += b.length;
      if (size >= INPUT_CHUNK_BYTES) {
        await send(Buffer.concat(batch, size));
        batch = [];
        size = 0;
      }
    }
    if (size > 0) await send(Buffer.concat(batch, size));
    input.push({ t: "eof" });
  };
  try {
    await pump();
    return await call;
  } catch (err) {
    ac.abort(); // the upload's body failed (client gone, bad gzip): the guest stops waiting for it
    call.catch(() => undefined);
    throw err instanceof Error && !(err instanceof HttpError) && !finished ? new HttpError(400, `reading the upload: ${err.message}`) : err;
  } finally {
    signal.removeEventListener("abort", abort);
  }
}

/**
 * The request's body inflated. pipe() does not pass on a client that went away (the gunzip
 * would wait for more forever, and this request's handling with it): its reader is cut off too.
 */
function gunzipped(req: IncomingMessage): Readable {
  const gunzip = createGunzip();
  req.once("close", () => {
    if (!req.complete) gunzip.destroy();
  });
  return req.pipe(gunzip);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** envd's error body: {"code": status, "message"}; once a download started, the connection is cut instead. */
function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  const { status, message } = err instanceof HttpError ? { status: err.status, message: err.message } : toHttpError(err);
  sendJson(res, status, { code: status, message });
}
