// The E2B API's HTTP plumbing: bounded JSON bodies, JSON answers, and errors in the shape the
// SDK parses ({ code: <HTTP status>, message }: it tests `error.code === 404`).
import type { IncomingMessage, ServerResponse } from "node:http";
import { errorLine, httpStatusOf } from "../util/errors.ts";

/** Control-plane bodies are small JSON objects (metadata and envVars are bounded by the daemon too). */
export const MAX_BODY_BYTES = 256 * 1024;

/** An error with the HTTP status it answers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The JSON object a request carries (none: {}); over MAX_BODY_BYTES: 413, not JSON: 400. */
export async function readJson(req: IncomingMessage, max = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max) throw new HttpError(413, `request body over ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, `request body over ${max} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not JSON: ${errorLine(err)}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "request body must be a JSON object");
  return body as Record<string, unknown>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-store", ...headers }).end(text);
}

export function sendEmpty(res: ServerResponse, status = 204): void {
  res.writeHead(status, { "Cache-Control": "no-store" }).end();
}

/** The HTTP status of what a daemon method (or this server) threw. */
export function statusOf(err: unknown): number {
  return err instanceof HttpError ? err.status : httpStatusOf(err);
}

/** An error answer: { code, message } with the status as code (one line, as every banger error). */
export function sendError(res: ServerResponse, err: unknown): void {
  const status = statusOf(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { code: status, message: err instanceof HttpError ? err.message : errorLine(err) });
}
