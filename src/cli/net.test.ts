// The forward spec parser and a forward's byte pipe (against a stand-in daemon on a Unix
// socket: the real one needs a VM, which test/e2e/network.test.ts boots).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import { RpcClient, RpcServer, type MethodTable } from "../rpc/index.ts";
import { emitStream, inputStream } from "../daemon/streams.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { makeTempHome } from "../../test/helpers.ts";
import { parseForwardSpec, startForward, vmNameFromHost } from "./net.ts";

describe("parseForwardSpec", () => {
  it("reads [HOST:]PORT[:GUESTPORT]", () => {
    assert.deepEqual(parseForwardSpec("8080"), { host: "127.0.0.1", port: 8080, guestPort: 8080 });
    assert.deepEqual(parseForwardSpec("8080:80"), { host: "127.0.0.1", port: 8080, guestPort: 80 });
    assert.deepEqual(parseForwardSpec("127.0.0.2:8080"), { host: "127.0.0.2", port: 8080, guestPort: 8080 });
    assert.deepEqual(parseForwardSpec("localhost:0:80"), { host: "localhost", port: 0, guestPort: 80 });
    assert.deepEqual(parseForwardSpec("[::1]:8080:80"), { host: "::1", port: 8080, guestPort: 80 });
  });

  it("refuses non-loopback hosts, bad ports and odd shapes", () => {
    for (const bad of ["0.0.0.0:8080", "192.168.1.2:80", "", "80:", ":80", "1:2:3:4", "70000", "abc", "0", "8080:0", "-1"]) {
      assert.throws(
        () => parseForwardSpec(bad),
        (err: BangerError) => err.code === ErrorCode.InvalidArgument,
        bad,
      );
    }
  });
});

it("vmNameFromHost takes what ssh passes as %h", () => {
  assert.equal(vmNameFromHost("brisk-otter.vm"), "brisk-otter");
  assert.equal(vmNameFromHost("Web.VM."), "Web");
  assert.equal(vmNameFromHost("plain"), "plain");
  assert.throws(() => vmNameFromHost("../x.vm"), /invalid vm name/);
});

describe("startForward", () => {
  const { home, cleanup } = makeTempHome();
  let server: RpcServer;
  let client: RpcClient;
  const calls: unknown[] = [];
  before(async () => {
    // vm.tcp stand-in: echoes what comes in, upper-cased, until the caller's EOF.
    const methods: MethodTable = {
      "vm.tcp": async (p, call) => {
        calls.push(p);
        const input = inputStream(call);
        void call.emit({ t: "started" });
        await emitStream(
          input.map((b: Buffer) => Buffer.from(b.toString().toUpperCase())),
          call,
        );
        return { closed: true };
      },
    };
    server = new RpcServer(methods, { info: () => undefined, error: () => undefined });
    await server.listen(join(home, "d.sock"), { mode: 0o600 });
    client = await RpcClient.connect(join(home, "d.sock"));
  });
  after(async () => {
    client.close();
    await server.close();
    cleanup();
  });

  it("pipes each accepted connection through its own vm.tcp call, both ways", async () => {
    const fw = await startForward(client, "web", { host: "127.0.0.1", port: 0, guestPort: 80 });
    assert.ok(fw.port > 0);
    const talk = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const s = connect(fw.port, "127.0.0.1", () => s.end(text));
        let got = "";
        s.on("data", (b) => (got += b));
        s.on("end", () => resolve(got));
        s.on("error", reject);
      });
    const big = "x".repeat(3 * 1024 * 1024);
    const [a, b, c] = await Promise.all([talk("hello"), talk("world"), talk(big)]);
    assert.equal(a, "HELLO");
    assert.equal(b, "WORLD");
    assert.equal(c.length, big.length);
    assert.equal(fw.connections, 3);
    assert.deepEqual(calls.slice(0, 3), [
      { name: "web", port: 80 },
      { name: "web", port: 80 },
      { name: "web", port: 80 },
    ]);
    await fw.close();
    await assert.rejects(talk("again"), /ECONNREFUSED/);
  });

  it("a port in use is a clear error", async () => {
    const first = await startForward(client, "web", { host: "127.0.0.1", port: 0, guestPort: 80 });
    await assert.rejects(startForward(client, "web", { host: "127.0.0.1", port: first.port, guestPort: 80 }), /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
    await first.close();
  });
});
