// `banger mcp` as a coding assistant drives it: the MCP SDK's own Client over stdio spawns the
// built bin/banger mcp against a real daemon (temporary root) and real VMs under QEMU: the
// tools and their schemas, create, exec (stdout, stderr, exit code, cwd, env, stdin, timeout,
// bounded output), files (text, binary, truncated), list, workspace export of a `vm run`
// VM, kill, and failures as one-line tool errors. stdout carries nothing but the protocol
// (the client's transport would report a line it cannot parse).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { committedRepo } from "../kits/workspace.ts";
import { REPO, isAlive, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const TOOLS = ["sandbox_create", "sandbox_exec", "sandbox_kill", "sandbox_list", "sandbox_read_file", "sandbox_write_file", "workspace_export"];

describe("banger mcp through the MCP SDK's client (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let client: Client;
  let transport: StdioClientTransport;
  const transportErrors: Error[] = [];
  let stderr = "";

  const call = async (name: string, args: Record<string, unknown> = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult;
  const textOf = (r: CallToolResult) => r.content.map((c) => (c.type === "text" ? c.text : "")).join("");
  const ok = (r: CallToolResult) => {
    assert.notEqual(r.isError, true, `tool failed: ${textOf(r)}`);
    return r;
  };

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    transport = new StdioClientTransport({
      command: process.execPath,
      args: [join(REPO, "bin", "banger"), "mcp"],
      env: { ...(process.env as Record<string, string>), BANGER_WEB_PORT: "0", ...(env as Record<string, string>), BANGER_HOME: home },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (b) => (stderr += b));
    client = new Client({ name: "banger-test", version: "1.0.0" });
    client.onerror = (err) => transportErrors.push(err);
    await client.connect(transport);
  });
  after(async () => {
    const pid = transport.pid;
    await client.close().catch(() => undefined);
    for (let i = 0; i < 100 && pid && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (pid && isAlive(pid)) process.kill(pid, "SIGKILL");
    for (const v of JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout || "[]") as { name: string }[]) {
      await runBanger(["vm", "rm", "-f", v.name], { home, env });
    }
    await stopDaemon(home);
    cleanup();
  });

  it("lists its tools, each with a one-line description and a JSON schema naming its arguments", async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS);
    for (const t of tools) {
      assert.ok(t.description && t.description.length > 20 && !t.description.includes("\n"), `${t.name}: one-line description`);
      assert.equal(t.inputSchema.type, "object");
    }
    const exec = tools.find((t) => t.name === "sandbox_exec")!;
    assert.deepEqual(Object.keys(exec.inputSchema.properties ?? {}).sort(), ["command", "cwd", "env", "stdin", "timeout", "vm"]);
    assert.deepEqual([...(exec.inputSchema.required ?? [])].sort(), ["command", "vm"]);
    const create = tools.find((t) => t.name === "sandbox_create")!;
    assert.deepEqual(Object.keys(create.inputSchema.properties ?? {}).sort(), ["cpus", "image", "memory", "name"]);
  });

  it("creates a sandbox and returns its name", async () => {
    const r = ok(await call("sandbox_create", { image: "busybox", name: "mcp1", memory: "256M" }));
    assert.equal(r.structuredContent?.name, "mcp1");
    assert.equal(r.structuredContent?.state, "running");
    assert.equal(r.structuredContent?.memoryBytes, 256 * 1024 * 1024);
    assert.match(textOf(r), /^created sandbox mcp1 /);
  });

  it("exec returns stdout, stderr and the exit code (a failing command is a result, not an error)", async () => {
    const r = ok(await call("sandbox_exec", { vm: "mcp1", command: "echo out; echo err >&2; exit 3" }));
    assert.deepEqual(r.structuredContent, { exitCode: 3, stdout: "out\n", stderr: "err\n", truncated: { stdout: 0, stderr: 0 } });
    assert.match(textOf(r), /^exit code: 3\n--- stdout ---\nout\n\n--- stderr ---\nerr\n/);
  });

  it("exec takes an argv, a cwd, environment and stdin", async () => {
    const r = ok(await call("sandbox_exec", { vm: "mcp1", command: ["sh", "-c", 'pwd; echo "$GREETING"; cat'], cwd: "/tmp", env: { GREETING: "hi there" }, stdin: "from stdin" }));
    assert.equal(r.structuredContent?.stdout, "/tmp\nhi there\nfrom stdin");
    assert.equal(r.structuredContent?.exitCode, 0);
  });

  it("exec output is bounded, with a note saying how much was cut", async () => {
    const r = ok(await call("sandbox_exec", { vm: "mcp1", command: "head -c 100000 /dev/zero | tr '\\0' a" }));
    const out = r.structuredContent as { stdout: string; truncated: { stdout: number } };
    assert.equal(out.stdout, "a".repeat(64 * 1024));
    assert.equal(out.truncated.stdout, 100000 - 64 * 1024);
    assert.match(textOf(r), /\[stdout truncated: 34464 more bytes not shown; redirect it to a file/);
  });

  it("exec past its timeout is a tool error with the output so far, and the command is ended", async () => {
    const r = await call("sandbox_exec", { vm: "mcp1", command: "echo started; sleep 30", timeout: 1 });
    assert.equal(r.isError, true);
    assert.match(textOf(r), /^command timed out after 1s and was ended \(raise timeoutMs/);
    assert.match(textOf(r), /--- stdout so far ---\nstarted\n/);
    const ps = ok(await call("sandbox_exec", { vm: "mcp1", command: "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; true" }));
    assert.doesNotMatch(String(ps.structuredContent?.stdout), /sleep 30/, "the timed-out command no longer runs");
  });

  it("writes and reads a text file (parent directories made)", async () => {
    ok(await call("sandbox_write_file", { vm: "mcp1", path: "/tmp/new/dir/hello.txt", content: "héllo wörld\n", mode: "600" }));
    assert.equal(textOf(ok(await call("sandbox_read_file", { vm: "mcp1", path: "/tmp/new/dir/hello.txt" }))), "héllo wörld\n");
    // Commands may read it: it belongs to the user they run as (mode 600 kept).
    const st = ok(await call("sandbox_exec", { vm: "mcp1", command: "ls -l /tmp/new/dir/hello.txt; cat /tmp/new/dir/hello.txt" }));
    assert.match(String(st.structuredContent?.stdout), /^-rw------- +1 dev +\S+ +14 .*\nhéllo wörld\n$/s);
  });

  it("reads a binary file as base64 and cuts a large one at maxBytes, saying so", async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255, 10]);
    ok(await call("sandbox_write_file", { vm: "mcp1", path: "/tmp/bin.dat", content: bytes.toString("base64"), encoding: "base64" }));
    const [note, body] = textOf(ok(await call("sandbox_read_file", { vm: "mcp1", path: "/tmp/bin.dat" }))).split("\n");
    assert.equal(note, "[binary file, 6 bytes: content below is base64]");
    assert.deepEqual(Buffer.from(body!, "base64"), bytes);
    ok(await call("sandbox_exec", { vm: "mcp1", command: "seq 1 1000 > /tmp/big.txt" }));
    const big = textOf(ok(await call("sandbox_read_file", { vm: "mcp1", path: "/tmp/big.txt", maxBytes: 10 })));
    assert.equal(big, "[truncated: first 10 of 3893 bytes; read further with sandbox_exec, e.g. tail -c +11 /tmp/big.txt | head -c 10]\n1\n2\n3\n4\n5\n");
  });

  it("lists the sandboxes", async () => {
    const r = ok(await call("sandbox_list"));
    const list = (r.structuredContent as { sandboxes: { name: string; state: string; image: string }[] }).sandboxes;
    assert.deepEqual(
      list.map((s) => [s.name, s.state, s.image]),
      [["mcp1", "running", "busybox"]],
    );
    assert.match(textOf(r), /^mcp1\trunning\tbusybox\t1 CPU\t256 MiB$/m);
  });

  it("failures are tool errors on one line with the hint, never a crash", async () => {
    const missing = await call("sandbox_exec", { vm: "nope", command: "true" });
    assert.equal(missing.isError, true);
    assert.match(textOf(missing), /^vm "?nope"? not found/);
    assert.doesNotMatch(textOf(missing), /\n/);
    const relative = await call("sandbox_write_file", { vm: "mcp1", path: "rel.txt", content: "x" });
    assert.equal(relative.isError, true);
    assert.equal(textOf(relative), '"rel.txt" is not an absolute path (name guest files from / (e.g. /tmp/notes.txt))');
    const dir = await call("sandbox_read_file", { vm: "mcp1", path: "/tmp/new" });
    assert.equal(dir.isError, true);
    assert.match(textOf(dir), /^\/tmp\/new is not a regular file \(directory\)/);
    const noWorkspace = await call("workspace_export", { vm: "mcp1" });
    assert.equal(noWorkspace.isError, true);
    assert.doesNotMatch(textOf(noWorkspace), /\n/);
    const badArgs = await call("sandbox_exec", { vm: "mcp1" });
    assert.equal(badArgs.isError, true, "a missing argument is refused");
    assert.match(textOf(badArgs), /command/);
    // The server is still there and serving.
    ok(await call("sandbox_list"));
  });

  it("exports a vm run workspace's changes as a patch", async () => {
    const repo = committedRepo(join(home, "repo"), { "README.md": "hello\n" }, "init");
    const run = await runBanger(["vm", "run", "--image", "busybox", "--memory", "256M", "--name", "ws", "--", "sh", "-c", "echo more >> README.md"], { home, env, cwd: repo });
    assert.equal(run.code, 0, run.stderr);
    const r = ok(await call("workspace_export", { vm: "ws" }));
    assert.match(textOf(r), /^0 commit\(s\) \+ uncommitted changes, \d+ bytes, base [0-9a-f]{40}, host repository /);
    assert.match(textOf(r), /\+\+\+ b\/README\.md\n@@ -1 \+1,2 @@\n hello\n\+more/);
    const out = join(home, "ws.patch");
    assert.match(textOf(ok(await call("workspace_export", { vm: "ws", out }))), /^wrote the patch to /);
    await mustRun(runBanger(["vm", "rm", "-f", "ws"], { home, env }));
  });

  it("kills a sandbox: it is gone from the list", async () => {
    assert.equal(textOf(ok(await call("sandbox_kill", { vm: "mcp1" }))), "removed sandbox mcp1");
    assert.equal(textOf(ok(await call("sandbox_list"))), "no sandboxes");
    assert.deepEqual(transportErrors, [], `stdout carried only the protocol; server stderr: ${stderr}`);
  });

  it("ends when its client closes stdin, having written nothing but protocol", async () => {
    const pid = transport.pid!;
    assert.ok(isAlive(pid));
    await client.close();
    for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(pid), false, "banger mcp exited");
    // On its own, without a signal: stdin at EOF at once.
    const alone = spawnSync(process.execPath, [join(REPO, "bin", "banger"), "mcp"], { input: "", encoding: "utf8", timeout: 10_000, env: { ...process.env, ...env, BANGER_HOME: home } });
    assert.deepEqual([alone.status, alone.signal, alone.stdout], [0, null, ""], alone.stderr);
  });
});
