// Package mcp is `banger mcp`: a Model Context Protocol server on stdio
// (@modelcontextprotocol/sdk's McpServer + StdioServerTransport) giving a coding assistant
// sandboxes: sandbox_create, sandbox_exec, sandbox_write_file, sandbox_read_file,
// sandbox_list, sandbox_kill and workspace_export (tools.ts: each a zod schema and a one-line
// description). Built on the SDK (sdk/), a client of bangerd like the CLI: one lazily made
// connection, made again after bangerd restarted. Every failure is a tool error (isError)
// with the BangerError's message and hint on one line, never a crash; output going back to
// the model is bounded, with a note. stdout carries the protocol only (notes go to stderr).
//
// It owns no VM behaviour (daemon/) and no client logic the SDK has (exec, files, workspace
// export live in sdk/).
export { mcpServer, serveStdio } from "./server.ts";
export { EXEC_OUTPUT_MAX, type Connection } from "./tools.ts";
