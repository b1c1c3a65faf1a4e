// The HTTP servers bangerd opens to clients (the dashboard, the E2B-compatible API): any local
// user can connect to their loopback port, key or no key, so the number of connections each
// holds open at once is bounded (Node's own header and request timeouts bound their time).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

/** Connections one server holds open at once; a connection past it is closed on accept. */
export const MAX_HTTP_CONNECTIONS = 1024;

export function boundedHttpServer(handler: (req: IncomingMessage, res: ServerResponse) => void, maxConnections = MAX_HTTP_CONNECTIONS): Server {
  const server = createServer(handler);
  server.maxConnections = maxConnections;
  return server;
}
