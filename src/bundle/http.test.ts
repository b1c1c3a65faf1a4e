// The download client against hand-written servers on loopback (raw TCP and TLS), so every
// framing case is exact: split heads, interim responses, chunked bodies cut anywhere, bodies
// longer than announced, stalls, cancellation, untrusted certificates.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { getEventListeners } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { after, before, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { type ByteSink, MAX_HEAD_BYTES, httpGet } from "./http.ts";
import { ChunkDecoder, parseHead } from "./http-wire.ts";
import { openSource, readAllBounded } from "./source.ts";

let home: { home: string; cleanup: () => void };
const servers: net.Server[] = [];
before(() => {
  home = makeTempHome();
});
after(async () => {
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
  home.cleanup();
});

/** A TCP (or TLS) server that answers every connection with `respond`. */
async function rawServer(respond: (socket: net.Socket) => void | Promise<void>, tlsOpts?: tls.TlsOptions): Promise<string> {
  const server = tlsOpts ? tls.createServer(tlsOpts, (s) => void respond(s)) : net.createServer((s) => void respond(s));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return `${tlsOpts ? "https" : "http"}://127.0.0.1:${port}/file`;
}

/** Waits for the request head, then writes `pieces` one by one, each in its own packet. */
function replies(pieces: Array<Buffer | string>, end = true) {
  return async (socket: net.Socket) => {
    socket.on("error", () => undefined);
    await new Promise((resolve) => socket.once("data", resolve));
    for (const p of pieces) {
      await new Promise((resolve) => socket.write(p, resolve));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    if (end) socket.end();
  };
}

/** A sink collecting into memory, offering `room` bytes at a time. */
function collector(room = 65536): ByteSink & { bytes(): Buffer } {
  const parts: Buffer[] = [];
  let current = Buffer.alloc(room);
  return {
    space: () => current,
    commit: (n) => {
      parts.push(Buffer.from(current.subarray(0, n)));
      current = Buffer.alloc(room);
      return undefined;
    },
    bytes: () => Buffer.concat(parts),
  };
}

async function get(url: string, sink = collector(), idleTimeoutMs = 5000): Promise<{ status: number; body: Buffer }> {
  const res = await httpGet(new URL(url), { idleTimeoutMs });
  const n = await res.readInto(sink);
  const body = sink.bytes();
  assert.equal(n, body.length);
  return { status: res.status, body };
}

function chunked(body: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  for (const size of sizes) {
    parts.push(Buffer.from(`${size.toString(16)};ext=1\r\n`), body.subarray(off, off + size), Buffer.from("\r\n"));
    off += size;
  }
  parts.push(Buffer.from("0\r\nX-Trailer: yes\r\n\r\n"));
  return Buffer.concat(parts);
}

test("a chunked body decodes the same however the bytes are split", () => {
  const body = randomBytes(300);
  const wire = chunked(body, [1, 17, 200, 82]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const out: Buffer[] = [];
    const dec = new ChunkDecoder();
    const first = dec.feed(wire.subarray(0, cut), (p) => out.push(Buffer.from(p)));
    const second = dec.feed(wire.subarray(cut), (p) => out.push(Buffer.from(p)));
    assert.equal(first, cut === wire.length, `ended early at cut ${cut}`);
    assert.ok(second || cut === wire.length);
    assert.ok(Buffer.concat(out).equals(body), `cut at ${cut}`);
  }
});

test("malformed chunked bodies and response heads are refused with what is wrong", () => {
  const feed = (s: string) => new ChunkDecoder().feed(Buffer.from(s), () => undefined);
  assert.throws(() => feed("zz\r\n"), /bad chunk size "zz"/);
  assert.throws(() => feed("3\r\nabcX\r\n"), /missing CRLF after a chunk/);
  assert.throws(() => feed("1".repeat(2000)), /line too long/);
  assert.throws(() => parseHead("SSH-2.0-OpenSSH"), /not an HTTP\/1.x response/);
  assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nContent-Length: 12, 13"), /bad content-length/);
  assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nContent-Length: -1"), /bad content-length/);
  assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"), /unsupported transfer-encoding/);
  assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nno colon here"), /malformed response header line/);
  const ok = parseHead("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nX-A: 1\r\nx-a: 2");
  assert.equal(ok.contentLength, 5);
  assert.equal(ok.headers.get("x-a"), "1, 2");
  assert.equal(parseHead("HTTP/1.0 200 OK\nContent-Length: 7").contentLength, 7, "bare LF line ends (RFC 9112 allows them)");
});

test("a head split into tiny packets, after a 100 Continue, then an exact Content-Length body", async () => {
  const body = randomBytes(200_000);
  const head = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n";
  const url = await rawServer(replies([...head.split(""), body.subarray(0, 5), body.subarray(5)]));
  const got = await get(url);
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(body));
});

test("bytes past Content-Length are dropped; a close-delimited body is read to the end", async () => {
  const body = randomBytes(100_000);
  const longer = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n`, body]));
  assert.ok((await get(longer)).body.equals(body.subarray(0, 1000)));
  const closing = await rawServer(replies([`HTTP/1.0 200 OK\r\n\r\n`, body]));
  assert.ok((await get(closing)).body.equals(body));
});

test("a chunked body over the wire, with the sink asking to wait (backpressure)", async () => {
  const body = randomBytes(500_000);
  const wire = chunked(body, [100_000, 1, 299_999, 100_000]);
  const url = await rawServer(replies([`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n`, wire.subarray(0, 77_777), wire.subarray(77_777)]));
  const inner = collector(4096);
  let waits = 0;
  const slow: ByteSink & { bytes(): Buffer } = {
    ...inner,
    commit: (n) => {
      inner.commit(n);
      waits++;
      return new Promise((resolve) => setImmediate(resolve));
    },
  };
  const got = await get(url, slow);
  assert.ok(got.body.equals(body));
  assert.ok(waits > 100);
});

test("a sink that makes the reader wait longer than the idle timeout is not a stalled server", async () => {
  const body = randomBytes(200_000);
  const url = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, body]));
  const inner = collector();
  let first = true;
  const sleepy: ByteSink & { bytes(): Buffer } = {
    ...inner,
    commit: (n) => {
      inner.commit(n);
      if (!first) return undefined;
      first = false;
      return new Promise((resolve) => setTimeout(resolve, 600));
    },
  };
  assert.ok((await get(url, sleepy, 200)).body.equals(body));
});

test("an oversized head, a cut-off body, a stall and a cancel each fail cleanly", async () => {
  const huge = await rawServer(replies([`HTTP/1.1 200 OK\r\nX-Pad: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`]));
  await assert.rejects(httpGet(new URL(huge), { idleTimeoutMs: 5000 }), /response head larger than 64 KiB/);

  const cut = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n`, randomBytes(1000)]));
  const res = await httpGet(new URL(cut), { idleTimeoutMs: 5000 });
  await assert.rejects(res.readInto(collector()), /connection closed after 1000 body bytes/);
  // The same with the 1000 bytes in the head's packet (held before readInto, then delivered): counted once.
  const cutEarly = await rawServer(replies([Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n`), randomBytes(1000)])]));
  const resEarly = await httpGet(new URL(cutEarly), { idleTimeoutMs: 5000 });
  await assert.rejects(resEarly.readInto(collector()), /connection closed after 1000 body bytes$/);

  const stall = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nabc`], false));
  const t0 = Date.now();
  const stalled = await httpGet(new URL(stall), { idleTimeoutMs: 200 });
  await assert.rejects(stalled.readInto(collector()), (err: BangerError) => err.code === ErrorCode.Timeout && /no data for 0.2 s/.test(err.message));
  assert.ok(Date.now() - t0 < 3000);

  const ac = new AbortController();
  const slowSrc = await openSource(new URL(stall), { signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(slowSrc.readInto(collector()), (err: BangerError) => err.code === ErrorCode.Cancelled);

  // A signal that fired before the request: refused at once, and no listener is left on it.
  const gone = new AbortController();
  gone.abort();
  await assert.rejects(httpGet(new URL(stall), { idleTimeoutMs: 5000, signal: gone.signal }), (err: BangerError) => err.code === ErrorCode.Cancelled);
  assert.equal(getEventListeners(gone.signal, "abort").length, 0);

  // A receiver that offers no room fails the transfer instead of spinning.
  const noRoom = await httpGet(new URL(cut), { idleTimeoutMs: 5000 });
  await assert.rejects(noRoom.readInto({ space: () => Buffer.alloc(0), commit: () => undefined }), /offered no room/);

  const refusing = await rawServer((s) => void s.destroy());
  await assert.rejects(openSource(new URL(refusing)), (err: BangerError) => err.code === ErrorCode.Unavailable && /GET http:\/\/127.0.0.1:\d+\/file: /.test(err.message));
});

test("a sink that refuses more bytes stops the transfer with its own error", async () => {
  const url = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n`, randomBytes(300_000)]));
  const src = await openSource(new URL(url));
  await assert.rejects(
    readAllBounded(src, 100_000, () => new Error("too big for the test")),
    /too big for the test/,
  );
});

test("heads with bare LF line ends, credentials from the URL, and a flood of interim responses", async () => {
  const bare = await rawServer(replies(["HTTP/1.0 200 OK\nContent-Length: 3\n\nabc"]));
  assert.equal((await get(bare)).body.toString(), "abc");
  for (const blank of ["\r\n\n", "\n\r\n"]) {
    const mixed = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 3${blank}abc`]));
    assert.equal((await get(mixed)).body.toString(), "abc", JSON.stringify(blank));
  }

  let authorization = "";
  const authed = await rawServer(async (socket) => {
    const head = String(await new Promise((resolve) => socket.once("data", resolve)));
    authorization = /^authorization: (.*)$/im.exec(head)?.[1]?.trim() ?? "";
    socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  await get(authed.replace("http://", "http://mirror%20user:s%3Acret@"));
  assert.equal(authorization, `Basic ${Buffer.from("mirror user:s:cret").toString("base64")}`);

  const flood = await rawServer(
    replies(
      [..."x".repeat(20)].map(() => "HTTP/1.1 103 Early Hints\r\n\r\n"),
      false,
    ),
  );
  await assert.rejects(httpGet(new URL(flood), { idleTimeoutMs: 5000 }), /more than 8 interim \(1xx\) responses/);
});

test("every wait the sink asks for is followed, also after the body ended (no unhandled rejection)", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on("unhandledRejection", onUnhandled);
  try {
    for (const wire of ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"]) {
      const url = await rawServer(replies([wire]));
      const res = await httpGet(new URL(url), { idleTimeoutMs: 5000 });
      const room = Buffer.alloc(100);
      // The receiver asks to wait, and what it waits on fails later (zstd died, a cancel).
      const n = await res.readInto({ space: () => room, commit: () => new Promise((_, reject) => setTimeout(() => reject(new Error("sink failed later")), 30)) });
      assert.ok(n === 10 || n === 5);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("closing the response while its body is being read rejects the read", async () => {
  const url = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nabc`], false));
  const res = await httpGet(new URL(url), { idleTimeoutMs: 5000 });
  const reading = res.readInto(collector());
  setTimeout(() => res.destroy(), 20);
  await assert.rejects(reading, /closed by banger before the end of the body/);
});

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl (a test package). */
function selfSignedCert(): { key: Buffer; cert: Buffer; certPath: string } {
  const keyPath = join(home.home, "key.pem");
  const certPath = join(home.home, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    { stdio: "ignore" },
  );
  return { key: readFileSync(keyPath), cert: readFileSync(certPath), certPath };
}

test("https: an untrusted certificate is refused with a hint; trusted through NODE_EXTRA_CA_CERTS it downloads", async () => {
  const { key, cert, certPath } = selfSignedCert();
  const body = randomBytes(3_000_000);
  const url = await rawServer(replies([`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, body]), { key, cert });
  await assert.rejects(
    openSource(new URL(url)),
    (err: BangerError) => err.code === ErrorCode.Unavailable && /SELF_SIGNED|UNABLE_TO_VERIFY/.test(err.message) && /NODE_EXTRA_CA_CERTS/.test(err.hint ?? ""),
  );
  // Node reads NODE_EXTRA_CA_CERTS at start-up only, so the trusting client is another process.
  // The server corks head and body: TLS then hands over records even while the client is paused
  // (after the head, before the body is read), which must all arrive. Both framings, read late.
  const corked = (framing: "length" | "close") =>
    rawServer(
      (socket) =>
        void socket.once("data", () => {
          socket.cork();
          socket.write(framing === "length" ? `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n` : "HTTP/1.1 200 OK\r\n\r\n");
          for (let off = 0; off < 40_000; off += 10_000) socket.write(body.subarray(off, off + 10_000));
          socket.uncork();
          socket.end(body.subarray(40_000));
        }),
      { key, cert },
    );
  const urls = [url, await corked("length"), await corked("close")];
  const script = `import { openSource, readAllBounded } from ${JSON.stringify(new URL("./source.ts", import.meta.url).pathname)};
    import { createHash } from "node:crypto";
    for (const url of ${JSON.stringify(urls)}) {
      const src = await openSource(new URL(url));
      await new Promise((resolve) => setTimeout(resolve, 30)); // read late, as a pull does
      console.log(createHash("sha256").update(await readAllBounded(src, 1 << 30, () => new Error("big"))).digest("hex"));
    }`;
  const child = await new Promise<{ out: string; err: string }>((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: certPath } });
    let out = "";
    let err = "";
    p.stdout.on("data", (b) => (out += b));
    p.stderr.on("data", (b) => (err += b));
    p.on("close", () => resolve({ out, err }));
  });
  const digest = createHash("sha256").update(body).digest("hex");
  assert.deepEqual(child.out.trim().split("\n"), [digest, digest, digest], child.err);
});
