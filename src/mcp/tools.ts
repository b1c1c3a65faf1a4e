// The MCP tools: each a zod schema (the JSON schema a client sees), a one-line description an
// assistant can act on, and a handler built on the SDK (sdk/). Output going back into a
// model's context is bounded, with a note saying what was cut and how to get the rest.
import { writeFile } from "node:fs/promises";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { type Banger, BangerError, ErrorCode, ExecTimeoutError, errorLine } from "../sdk/index.ts";
import { humanBytes } from "../util/human.ts";
import { parseSize } from "../util/size.ts";

/** Most bytes of each of stdout and stderr an exec returns. */
export const EXEC_OUTPUT_MAX = 64 * 1024;
/** Default and largest head of a file sandbox_read_file returns. */
const READ_DEFAULT = 256 * 1024;
const READ_MAX = 4 * 1024 * 1024;
/** Largest patch workspace_export returns inline (`out` writes any size). */
const PATCH_MAX = 512 * 1024;

/** The connection the tools use: made at the first call, made again after it was lost (bangerd restarted). */
export interface Connection {
  get(): Promise<Banger>;
  /** Forgets a lost connection: the next get() connects again. */
  reset(): void;
}

const vmName = z.string().min(1).describe("the sandbox (VM) name, as sandbox_create returned or sandbox_list shows");

function text(t: string, structured?: Record<string, unknown>): CallToolResult {
  return { content: [{ type: "text", text: t }], ...(structured ? { structuredContent: structured } : {}) };
}

/** A failure as an MCP tool error: one line, the BangerError's message and hint. */
export function toolError(err: unknown): CallToolResult {
  return { isError: true, content: [{ type: "text", text: errorLine(err).replace(/\s*\n\s*/g, " ") }] };
}

/** A handler that never throws: a failure becomes a tool error, and a lost connection is dropped. */
function guarded<A>(connection: Connection, fn: (args: A) => Promise<CallToolResult>): (args: A) => Promise<CallToolResult> {
  return async (args) => {
    try {
      return await fn(args);
    } catch (err) {
      if (connectionLost(err)) connection.reset();
      return toolError(err);
    }
  };
}

/** Text a model can read: UTF-8 as is, anything else as base64 (said so). */
function decoded(data: Buffer): { text: string; encoding: "utf8" | "base64" } {
  const t = data.toString("utf8");
  const binary = t.includes("\u0000") || !Buffer.from(t, "utf8").equals(data);
  return binary ? { text: data.toString("base64"), encoding: "base64" } : { text: t, encoding: "utf8" };
}

function cutNote(stream: string, omitted: number): string {
  return `[${stream} truncated: ${omitted} more bytes not shown; redirect it to a file and read parts (cmd > /tmp/out 2>&1; tail -c 20000 /tmp/out)]`;
}

export function registerTools(server: McpServer, connection: Connection): void {
  server.registerTool(
    "sandbox_create",
    {
      description: "Create and boot a new disposable Linux VM (sandbox); returns its name for the other sandbox_* tools.",
      inputSchema: {
        image: z.string().optional().describe("image name (see `banger image ls`); default: the configured default image"),
        name: z.string().optional().describe("VM name (letters, digits, -); default: a generated one"),
        cpus: z.number().int().min(1).max(64).optional().describe("virtual CPUs (default 1)"),
        memory: z.string().optional().describe('guest memory, e.g. "512M" or "2G" (default: the image\'s)'),
      },
      outputSchema: { name: z.string(), image: z.string(), state: z.string(), cpus: z.number(), memoryBytes: z.number() },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.create({ image: args.image, name: args.name, cpus: args.cpus, memoryBytes: args.memory === undefined ? undefined : parseSize(args.memory, "memory", "m") });
      const v = vm.view;
      return text(`created sandbox ${v.name} (image ${v.image}, ${v.cpus} CPU, ${humanBytes(v.memoryBytes)}, ${v.state})`, {
        name: v.name,
        image: v.image,
        state: v.state,
        cpus: v.cpus,
        memoryBytes: v.memoryBytes,
      });
    }),
  );

  server.registerTool(
    "sandbox_exec",
    {
      description: "Run a command in a sandbox and wait for it: a string runs with sh -c, an array as argv; returns stdout, stderr and the exit code.",
      inputSchema: {
        vm: vmName,
        command: z.union([z.string().min(1), z.array(z.string()).min(1)]).describe('shell command ("make test 2>&1 | tail") or argv (["ls", "-la", "/"])'),
        cwd: z.string().optional().describe("working directory in the guest"),
        env: z.record(z.string(), z.string()).optional().describe("extra environment variables"),
        stdin: z.string().optional().describe("text sent to the command's stdin (default: none)"),
        timeout: z.number().positive().max(3600).optional().describe("seconds before the command is ended (default 120)"),
      },
      outputSchema: { exitCode: z.number(), signal: z.string().optional(), stdout: z.string(), stderr: z.string(), truncated: z.object({ stdout: z.number(), stderr: z.number() }) },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.get(args.vm);
      const timeoutMs = Math.round((args.timeout ?? 120) * 1000);
      try {
        const r = await vm.exec(args.command, { cwd: args.cwd, env: args.env, stdin: args.stdin, timeoutMs, maxOutputBytes: EXEC_OUTPUT_MAX });
        const parts = [`exit code: ${r.exitCode}${r.signal ? ` (killed by ${r.signal})` : ""}`, "--- stdout ---", r.stdout, "--- stderr ---", r.stderr];
        if (r.truncated.stdout > 0) parts.push(cutNote("stdout", r.truncated.stdout));
        if (r.truncated.stderr > 0) parts.push(cutNote("stderr", r.truncated.stderr));
        return text(parts.join("\n"), { exitCode: r.exitCode, ...(r.signal ? { signal: r.signal } : {}), stdout: r.stdout, stderr: r.stderr, truncated: r.truncated });
      } catch (err) {
        if (!(err instanceof ExecTimeoutError)) throw err;
        const partial = `--- stdout so far ---\n${err.stdout.slice(-EXEC_OUTPUT_MAX)}\n--- stderr so far ---\n${err.stderr.slice(-EXEC_OUTPUT_MAX)}`;
        return { isError: true, content: [{ type: "text", text: `${errorLine(err)}\n${partial}` }] };
      }
    }),
  );

  server.registerTool(
    "sandbox_write_file",
    {
      description: "Write a file in a sandbox (absolute path; parent directories are created; replaces a file there; owned by the user commands run as).",
      inputSchema: {
        vm: vmName,
        path: z.string().min(1).describe("absolute path in the guest, e.g. /tmp/app/main.py"),
        content: z.string().describe("the file's content"),
        encoding: z.enum(["utf8", "base64"]).optional().describe("how content is encoded (default utf8; base64 for binary)"),
        mode: z
          .string()
          .regex(/^[0-7]{3,4}$/)
          .optional()
          .describe('permission bits in octal, e.g. "755" (default "644")'),
      },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.get(args.vm);
      const data = Buffer.from(args.content, args.encoding === "base64" ? "base64" : "utf8");
      await vm.writeFile(args.path, data, { mode: args.mode === undefined ? undefined : Number.parseInt(args.mode, 8) });
      return text(`wrote ${data.length} bytes to ${args.path} in ${vm.name}`);
    }),
  );

  server.registerTool(
    "sandbox_read_file",
    {
      description: "Read a file from a sandbox: text as is, binary as base64; large files are cut at maxBytes with a note.",
      inputSchema: {
        vm: vmName,
        path: z.string().min(1).describe("absolute path in the guest"),
        maxBytes: z.number().int().min(1).max(READ_MAX).optional().describe(`most bytes returned (default ${READ_DEFAULT})`),
      },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.get(args.vm);
      const max = args.maxBytes ?? READ_DEFAULT;
      const head = await vm.readFileHead(args.path, max);
      const { text: body, encoding } = decoded(head.data);
      const notes: string[] = [];
      if (encoding === "base64") notes.push(`[binary file, ${head.size} bytes: content below is base64]`);
      if (head.size > head.data.length) {
        notes.push(`[truncated: first ${head.data.length} of ${head.size} bytes; read further with sandbox_exec, e.g. tail -c +${head.data.length + 1} ${args.path} | head -c ${max}]`);
      }
      return text(notes.length > 0 ? `${notes.join("\n")}\n${body}` : body);
    }),
  );

  server.registerTool(
    "sandbox_list",
    {
      description: "List the sandboxes (VMs) with their state, image, CPUs and memory.",
      inputSchema: {},
      outputSchema: { sandboxes: z.array(z.object({ name: z.string(), state: z.string(), image: z.string(), cpus: z.number(), memoryBytes: z.number(), ip: z.string().nullable() })) },
    },
    guarded(connection, async () => {
      const b = await connection.get();
      const sandboxes = (await b.vms.list()).map((v) => ({ name: v.name, state: v.state, image: v.image, cpus: v.cpus, memoryBytes: v.memoryBytes, ip: v.ip }));
      const lines = sandboxes.map((s) => `${s.name}\t${s.state}\t${s.image}\t${s.cpus} CPU\t${humanBytes(s.memoryBytes)}`);
      return text(lines.length > 0 ? lines.join("\n") : "no sandboxes", { sandboxes });
    }),
  );

  server.registerTool(
    "sandbox_kill",
    {
      description: "Destroy a sandbox: stop its VM at once and remove it with everything in it.",
      inputSchema: { vm: vmName },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.get(args.vm);
      await vm.rm({ force: true });
      return text(`removed sandbox ${vm.name}`);
    }),
  );

  server.registerTool(
    "workspace_export",
    {
      description: "Get the changes made inside a `banger vm run` workspace VM as a git patch (mbox) against the host repository's HEAD.",
      inputSchema: {
        vm: vmName,
        out: z.string().optional().describe("host file to write the whole patch to (otherwise it is returned, cut at 512 KiB)"),
      },
    },
    guarded(connection, async (args) => {
      const b = await connection.get();
      const vm = await b.vms.get(args.vm);
      const exported = await vm.exportWorkspace();
      const summary = `${exported.commits} commit(s)${exported.hasUncommitted ? " + uncommitted changes" : ""}, ${exported.patch.length} bytes, base ${exported.baseCommit ?? "(root)"}, host repository ${exported.hostRepo}`;
      if (exported.patch.length === 0) return text(`no changes in ${vm.name}'s workspace`);
      if (args.out) {
        await writeFile(args.out, exported.patch);
        return text(`wrote the patch to ${args.out}: ${summary} (apply: git -C ${exported.hostRepo} am ${args.out})`);
      }
      const cut = exported.patch.length > PATCH_MAX;
      const body = exported.patch.subarray(0, PATCH_MAX).toString("utf8");
      return text(`${summary}\n${cut ? `[truncated at ${PATCH_MAX} bytes: pass out to write it whole]\n` : ""}${body}`);
    }),
  );
}

/** Whether an error means the connection to bangerd is gone (or never was): the next call connects again. */
function connectionLost(err: unknown): boolean {
  return err instanceof BangerError && err.code === ErrorCode.Unavailable;
}
