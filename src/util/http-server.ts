// The HTTP servers bangerd opens to clients (the dashboard, the E2B-compatible API): any local
// user can connect to their loopback port, key or no key, so the number of connections each
// holds open at once is bounded (Node's own header and request timeouts bound their time; a
// server whose requests may rightly stream for long, the E2B API's uploads and stdin streams,
// lifts the request timeout: its connections stay bounded in number and need headers within 60 s).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

/** Connections one server holds open at once; a connection past it is closed on accept. */
export const MAX_HTTP_CONNECTIONS = 1024;
/** A request's headers must arrive within this (Node's default). */
const HEADERS_TIMEOUT_MS = 60_000;

export function boundedHttpServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  opts: { maxConnections?: number /** 0: none; default Node's (300 s for a whole request) */; requestTimeoutMs?: number } = {},
): Server {
  // Node derives the header timeout from the request timeout (the smaller of it and 60 s): with
  // none, headers too could trickle forever, so it is set apart.
  const server = createServer(opts.requestTimeoutMs === undefined ? {} : { requestTimeout: opts.requestTimeoutMs, headersTimeout: HEADERS_TIMEOUT_MS }, handler);
  server.maxConnections = opts.maxConnections ?? MAX_HTTP_CONNECTIONS;
  return server;
}
