// `banger mcp`: the MCP server on stdio. stdout carries the protocol and nothing else (notes
// and logs go to stderr); the server ends when its client closes stdin.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { Banger, type ConnectOptions } from "../sdk/index.ts";
import { buildInfo } from "../util/buildinfo.ts";
import { type Connection, registerTools } from "./tools.ts";

/** One lazily made connection to bangerd, shared by every tool call. */
function lazyConnection(opts: ConnectOptions): Connection & { close(): void } {
  let current: Promise<Banger> | undefined;
  return {
    get() {
      current ??= Banger.connect(opts);
      // A failed connect is not kept: the next call tries again.
      current.catch(() => (current = undefined));
      return current;
    },
    reset() {
      const lost = current;
      current = undefined;
      lost?.then((b) => b.close()).catch(() => undefined);
    },
    close() {
      current?.then((b) => b.close()).catch(() => undefined);
    },
  };
}

export function mcpServer(connection: Connection): McpServer {
  const server = new McpServer({ name: "banger", version: buildInfo.version });
  registerTools(server, connection);
  return server;
}

/** Serves MCP on stdin/stdout until the client goes away. */
export async function serveStdio(opts: ConnectOptions = {}): Promise<void> {
  const connection = lazyConnection({ ...opts, onNote: (line) => void process.stderr.write(`banger mcp: ${line}\n`) });
  const server = mcpServer(connection);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.stdin.once("close", () => resolve());
  });
  await server.connect(transport);
  await closed;
  connection.close();
  await server.close().catch(() => undefined);
}
