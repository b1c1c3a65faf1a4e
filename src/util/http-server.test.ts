import assert from "node:assert/strict";
import { once } from "node:events";
import { type Socket, connect } from "node:net";
import { describe, it } from "node:test";
import { boundedHttpServer } from "./http-server.ts";

describe("boundedHttpServer", () => {
  it("closes a connection past its bound and serves again once one ends", async () => {
    const server = boundedHttpServer((_req, res) => res.end("ok"), 2);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const open = async (): Promise<Socket> => {
      const s = connect(port, "127.0.0.1");
      await once(s, "connect");
      return s;
    };
    const closedWithin = (s: Socket, ms: number) => Promise.race([once(s, "close").then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
    try {
      const held = [await open(), await open()];
      const extra = await open();
      assert.equal(await closedWithin(extra, 2000), true, "the third connection is closed");
      assert.equal(await closedWithin(held[0]!, 200), false, "the ones within the bound stay open");
      held[0]!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
      assert.equal(await res.text(), "ok");
      for (const s of held) s.destroy();
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
