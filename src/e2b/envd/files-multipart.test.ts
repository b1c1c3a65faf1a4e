// The multipart reader against bodies made by the platform's own FormData (what the E2B SDK
// sends), split into chunks at every kind of place, and against malformed or oversized ones.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { MultipartError, multipartBoundary, readMultipart } from "./files-multipart.ts";

async function encode(files: Array<{ name: string; data: Uint8Array<ArrayBuffer> | string }>): Promise<{ body: Buffer; boundary: string }> {
  const form = new FormData();
  for (const f of files) form.append("file", new Blob([f.data]), f.name);
  form.append("note", "not a file");
  const req = new Request("http://x/", { method: "POST", body: form });
  const boundary = multipartBoundary(req.headers.get("content-type") ?? undefined);
  assert.ok(boundary, "FormData's content type has a boundary");
  return { body: Buffer.from(await req.arrayBuffer()), boundary };
}

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function parse(body: Buffer, boundary: string, chunk: number, max = 1 << 30) {
  const parts: Array<{ name: string; filename: string | undefined; data: Buffer }> = [];
  await readMultipart(Readable.from(chunked(body, chunk), { objectMode: false }), boundary, max, async (p) => {
    const bufs: Buffer[] = [];
    for await (const b of p.body) bufs.push(b as Buffer);
    parts.push({ name: p.name, filename: p.filename, data: Buffer.concat(bufs) });
  });
  return parts;
}

describe("multipart reader", () => {
  it("streams every part whole, however the body is chunked", async () => {
    const big = new Uint8Array(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    // A body that contains what looks like the start of a boundary.
    const tricky = "line\r\n--not the boundary\r\n-";
    const { body, boundary } = await encode([
      { name: "/home/user/a.txt", data: "hello" },
      { name: 'dir/we"ird\nname.bin', data: big },
      { name: "empty", data: "" },
      { name: "t.txt", data: tricky },
    ]);
    for (const chunk of [5, 64, 4096, 1 << 20]) {
      const parts = await parse(body, boundary, chunk);
      assert.deepEqual(
        parts.map((p) => [p.name, p.filename, p.data.length]),
        [
          ["file", "/home/user/a.txt", 5],
          ["file", 'dir/we"ird\nname.bin', big.length],
          ["file", "empty", 0],
          ["file", "t.txt", tricky.length],
          ["note", undefined, 10],
        ],
        `chunk ${chunk}`,
      );
      assert.ok(parts[1]!.data.equals(big), `chunk ${chunk}: the bytes survive`);
      assert.equal(parts[3]!.data.toString(), tricky);
    }
  });

  it("refuses truncated bodies, oversized uploads and endless headers", async () => {
    const { body, boundary } = await encode([{ name: "a", data: "x".repeat(1000) }]);
    await assert.rejects(parse(body.subarray(0, body.length - 20), boundary, 100), MultipartError);
    await assert.rejects(parse(body, boundary, 100, 500), /upload larger than 500 bytes/);
    const endless = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"\r\nX: `), Buffer.alloc(40_000, 0x61)]);
    await assert.rejects(parse(endless, boundary, 1000), /too long|ended early/);
  });

  it("reads the boundary of a form content type only", () => {
    assert.equal(multipartBoundary("multipart/form-data; boundary=abc"), "abc");
    assert.equal(multipartBoundary('multipart/form-data; boundary="a b"'), "a b");
    assert.equal(multipartBoundary("application/octet-stream"), undefined);
    assert.equal(multipartBoundary(undefined), undefined);
  });
});
