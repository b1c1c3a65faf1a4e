// envd's Process service (src/e2b/envd/process.ts) against a real VM, through a real Connect
// client (JSON codec, HTTP/1.1, as the e2b SDK speaks it) on a loopback server this test
// starts: Start (stdout/stderr/exit code, envs, cwd), stdin, background + List + Connect +
// SendSignal, a PTY with Update, the Start request's timeout, errors by Connect code.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import type { Handlers, StreamInput } from "../../src/api/index.ts";
import { resolvePaths } from "../../src/config/index.ts";
import { RpcClient } from "../../src/rpc/index.ts";
import type { EnvdDeps } from "../../src/e2b/envd/context.ts";
import { processService } from "../../src/e2b/envd/process.ts";
import { Process, type ProcessEvent, Signal } from "../../src/e2b/gen/process_pb.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const SANDBOX = { id: "sbx-proc", vm: "e2bproc", envVars: { FROM_SANDBOX: "sandbox", SHADOWED: "sandbox" } };
const TOKEN = "test-token";

/** Collects a Start/Connect stream: its pid, output per stream, end event. */
async function collect(events: AsyncIterable<{ event?: ProcessEvent }>, onEvent?: (text: string) => void) {
  let pid = 0;
  const out = { stdout: "", stderr: "", pty: "" };
  let end: { exitCode: number; exited: boolean; status: string; error?: string } | undefined;
  let keepalives = 0;
  for await (const res of events) {
    const ev = res.event?.event;
    if (ev?.case === "start") pid = ev.value.pid;
    else if (ev?.case === "data" && ev.value.output.case) {
      const text = Buffer.from(ev.value.output.value).toString();
      out[ev.value.output.case] += text;
      onEvent?.(text);
    } else if (ev?.case === "end") {
      const { exitCode, exited, status, error } = ev.value;
      end = { exitCode, exited, status, ...(error === undefined ? {} : { error }) };
    } else if (ev?.case === "keepalive") keepalives++;
  }
  return { pid, ...out, end, keepalives };
}

/** The pid in a stream's first event, which must be the start event. */
async function firstPid(events: AsyncIterator<{ event?: ProcessEvent }>): Promise<number> {
  const ev = (await events.next()).value?.event?.event;
  if (ev?.case !== "start") throw new Error(`expected the start event first, got ${ev?.case}`);
  return ev.value.pid;
}

const bash = (cmd: string) => ({ cmd: "/bin/bash", args: ["-l", "-c", cmd], envs: {} as Record<string, string> });

describe("envd Process service on a real VM (QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let daemon: RpcClient;
  let server: Server;
  let client: Client<typeof Process>;
  const headers = { "X-Access-Token": TOKEN, "E2b-Sandbox-Id": SANDBOX.id };

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["vm", "create", "--name", SANDBOX.vm, "--image", "busybox", "--memory", "256M"], { home, env }));
    daemon = await RpcClient.connect(resolvePaths({ ...env, BANGER_HOME: home }).socket);
    // This test runs outside bangerd, so the method table the service calls in-process is
    // stood in for by one that forwards vm.exec (events and input) to the real daemon's socket.
    const methods = {
      "vm.exec": (params: unknown, ctx: Parameters<Handlers["vm.exec"]>[1]) => {
        const call = daemon.start("vm.exec", params, { signal: ctx.signal, onEvent: (ev) => void ctx.emit(ev) });
        ctx.onInput((raw) => {
          const input = raw as StreamInput;
          if (input.t === "in" && "data" in input) call.input({ t: "in" }, input.data);
          else call.input(input);
        });
        return call.result;
      },
    } as unknown as Partial<Handlers>;
    // Stands in for e2b-api's sandbox lookup: one sandbox, one token.
    const deps: EnvdDeps = {
      methods,
      sandboxFor: async (h) => {
        if (h.get("x-access-token") !== TOKEN) throw new ConnectError("bad access token", Code.Unauthenticated);
        if (h.get("e2b-sandbox-id") !== SANDBOX.id) throw new ConnectError("no such sandbox", Code.NotFound);
        return SANDBOX;
      },
    };
    server = createServer(connectNodeAdapter({ routes: (r) => r.service(Process, processService(deps)) }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    client = createClient(Process, createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", useBinaryFormat: false }));
  });
  after(async () => {
    server?.closeAllConnections();
    server?.close();
    daemon?.close();
    await runBanger(["vm", "rm", "-f", SANDBOX.vm], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("runs a command: stdout, stderr and the exit code in the end event (bash falls back to sh)", async () => {
    const r = await collect(client.start({ process: bash("echo out; echo err >&2; exit 3"), stdin: false }, { headers }));
    assert.ok(r.pid > 1, `a guest pid, got ${r.pid}`);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
    assert.deepEqual(r.end, { exitCode: 3, exited: true, status: "exit status 3" });
  });

  it("gives the sandbox's envVars under the request's envs, and the cwd", async () => {
    const process = { ...bash('echo "$FROM_SANDBOX $SHADOWED $MINE $(pwd)"'), envs: { SHADOWED: "request", MINE: "mine" }, cwd: "/tmp" };
    const r = await collect(client.start({ process, stdin: false }, { headers }));
    assert.equal(r.stdout, "sandbox request mine /tmp\n");
    assert.equal(r.end?.exitCode, 0);
  });

  it("feeds stdin with SendInput and ends it with CloseStdin", async () => {
    const events = client.start({ process: bash("tr a-z A-Z"), stdin: true }, { headers })[Symbol.asyncIterator]();
    const pid = await firstPid(events);
    const rest = collect({ [Symbol.asyncIterator]: () => events });
    await client.sendInput({ process: { selector: { case: "pid", value: pid } }, input: { input: { case: "stdin", value: Buffer.from("hello ") } } }, { headers });
    await client.streamInput(
      (async function* () {
        yield { event: { case: "start" as const, value: { process: { selector: { case: "pid" as const, value: pid } } } } };
        yield { event: { case: "data" as const, value: { input: { input: { case: "stdin" as const, value: Buffer.from("stream") } } } } };
      })(),
      { headers },
    );
    await client.closeStdin({ process: { selector: { case: "pid", value: pid } } }, { headers });
    const r = await rest;
    assert.equal(r.stdout, "HELLO STREAM");
    assert.equal(r.end?.exitCode, 0);
  });

  it("keeps a background process past its Start stream: List, Connect by tag, SendSignal, then forgets it", async () => {
    const started = new AbortController();
    const events = client.start({ process: bash("echo begun; while true; do sleep 0.2; echo tick; done"), tag: "ticker", stdin: false }, { headers, signal: started.signal });
    const pid = await firstPid(events[Symbol.asyncIterator]());
    started.abort(); // the SDK's disconnect: the process keeps running
    await new Promise((r) => setTimeout(r, 500));
    const listed = await client.list({}, { headers });
    const row = listed.processes.find((p) => p.pid === pid);
    assert.equal(row?.tag, "ticker");
    assert.equal(row?.config?.cmd, "/bin/bash");
    assert.deepEqual(row?.config?.args.slice(0, 2), ["-l", "-c"]);

    let seen = "";
    let signalled = false;
    const connected = collect(client.connect({ process: { selector: { case: "tag", value: "ticker" } } }, { headers }), (text) => {
      seen += text;
      if (!signalled && seen.includes("tick")) {
        signalled = true;
        void client.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGKILL }, { headers });
      }
    });
    const r = await connected;
    assert.equal(r.pid, pid, "Connect's start event names the same process");
    assert.ok(!r.stdout.includes("begun"), "Connect streams from now on, not the past");
    assert.deepEqual(r.end, { exitCode: -1, exited: false, status: "signal: killed" });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await client.list({}, { headers })).processes.length, 0, "forgotten after its end");
    await assert.rejects(client.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGKILL }, { headers }), (e) => e instanceof ConnectError && e.code === Code.NotFound);
  });

  it("runs a PTY: typed input echoes back, Update resizes it, SIGKILL ends it", async () => {
    const events = client.start(
      { process: { cmd: "/bin/bash", args: ["-i", "-l"], envs: { TERM: "xterm-256color" } }, pty: { size: { rows: 24, cols: 80 } } },
      { headers: { ...headers, "Keepalive-Ping-Interval": "1" } },
    );
    const it = events[Symbol.asyncIterator]();
    const pid = await firstPid(it);
    let screen = "";
    const waitFor = async (re: RegExp) => {
      const deadline = Date.now() + 20_000;
      while (!re.test(screen)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in the PTY output: ${JSON.stringify(screen)}`);
        const next = await it.next();
        const ev = next.value?.event?.event;
        if (ev?.case === "data") screen += Buffer.from(ev.value.output.value ?? []).toString();
        if (next.done) throw new Error(`the PTY ended: ${JSON.stringify(screen)}`);
      }
    };
    const type = (text: string) => client.sendInput({ process: { selector: { case: "pid", value: pid } }, input: { input: { case: "pty", value: Buffer.from(text) } } }, { headers });
    await type("echo typed-$((40+2))\n");
    await waitFor(/typed-42/);
    await client.update({ process: { selector: { case: "pid", value: pid } }, pty: { size: { rows: 33, cols: 101 } } }, { headers });
    await type("stty size\n");
    await waitFor(/33 101/);
    await client.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: Signal.SIGKILL }, { headers });
    let end: unknown;
    for (let n = await it.next(); !n.done; n = await it.next()) if (n.value.event?.event.case === "end") end = n.value.event.event.value;
    assert.equal((end as { exitCode: number }).exitCode, -1);
  });

  it("kills a process at its Start request's timeout (Connect-Timeout-Ms)", async () => {
    const t0 = Date.now();
    await assert.rejects(collect(client.start({ process: bash("sleep 30"), stdin: false }, { headers, timeoutMs: 1500 })), (e) => e instanceof ConnectError && e.code === Code.DeadlineExceeded);
    const deadline = Date.now() + 10_000;
    while ((await client.list({}, { headers })).processes.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await client.list({}, { headers })).processes.length, 0, "killed, not left running");
    assert.ok(Date.now() - t0 < 10_000);
  });

  it("answers errors with the Connect codes the SDK maps", async () => {
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        return e instanceof ConnectError ? e.code : e;
      }
      return "no error";
    };
    const unknown = { process: { selector: { case: "pid" as const, value: 999_999 } } };
    assert.equal(await code(client.sendSignal({ ...unknown, signal: Signal.SIGKILL }, { headers })), Code.NotFound);
    assert.equal(await code(collect(client.connect(unknown, { headers }))), Code.NotFound);
    assert.equal(await code(client.closeStdin(unknown, { headers })), Code.NotFound);
    assert.equal(await code(collect(client.start({ process: { cmd: "", args: [], envs: {} } }, { headers }))), Code.InvalidArgument);
    assert.equal(await code(collect(client.start({ process: { cmd: "/no/such/program", args: [], envs: {} }, stdin: false }, { headers }))), Code.InvalidArgument);
    assert.equal(await code(client.list({}, { headers: { ...headers, "X-Access-Token": "wrong" } })), Code.Unauthenticated);
    const basic = (user: string) => ({ ...headers, Authorization: `Basic ${Buffer.from(`${user}:`).toString("base64")}` });
    assert.equal(await code(collect(client.start({ process: bash("true"), stdin: false }, { headers: basic("no-such-user") }))), Code.Unauthenticated, "envd's answer for a user the guest lacks");
    const asRoot = await collect(client.start({ process: bash("id -u"), stdin: false }, { headers: basic("root") }));
    assert.equal(asRoot.stdout, "0\n");
  });
});
