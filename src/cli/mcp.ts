// `banger mcp`: serves the MCP tools (mcp/) on stdio for a coding assistant, which starts it
// as a subprocess. Loaded on demand: other commands never parse the MCP SDK.
import type { Command } from "commander";

export function registerMcp(program: Command): void {
  program
    .command("mcp")
    .description("serve banger's sandboxes to a coding assistant over MCP (stdio): create, exec, files, list, kill, workspace export")
    .action(async () => {
      const { serveStdio } = await import("../mcp/index.ts");
      await serveStdio();
    });
}
