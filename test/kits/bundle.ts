// Test support for bundle, kernelcat and imagecat (and the bench): a loopback HTTP server
// that serves bundles and catalogs with controllable misbehaviour, and a raw tar.zst builder
// for hand-made (evil) archives. Not used by the product.
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import tar from "tar-stream";

export interface Route {
  body?: Buffer | string;
  /** Serve this file instead of `body` (streamed). */
  file?: string;
  status?: number;
  redirectTo?: string;
  /** Send only this many bytes, then cut the connection. */
  truncateAt?: number;
  /** Leave out Content-Length (chunked encoding), so the client can't know the size up front. */
  chunked?: boolean;
  /** Send 64 KiB at a time with this pause between pieces. */
  delayMs?: number;
}

export interface TestServer {
  url(path: string): string;
  route(path: string, route: Route): void;
  /** GET requests seen per path. */
  hits(path: string): number;
  close(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const routes = new Map<string, Route>();
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    void serve(routes.get(path), res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    route: (path, route) => void routes.set(path, route),
    hits: (path) => hits.get(path) ?? 0,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function serve(route: Route | undefined, res: http.ServerResponse): Promise<void> {
  if (!route) return void res.writeHead(404).end("not found");
  if (route.redirectTo) return void res.writeHead(302, { location: route.redirectTo }).end();
  if (route.status && route.status !== 200) return void res.writeHead(route.status).end("error");
  const size = route.file ? (await stat(route.file)).size : Buffer.byteLength(route.body ?? "");
  res.writeHead(200, route.chunked ? {} : { "content-length": String(size) });
  if (route.file && route.truncateAt === undefined && !route.delayMs) {
    createReadStream(route.file, { highWaterMark: 1024 * 1024 }).pipe(res);
    return;
  }
  const data = route.file ? await readFile(route.file) : Buffer.from(route.body ?? "");
  const end = route.truncateAt ?? data.length;
  for (let off = 0; off < end && !res.destroyed; off += 65536) {
    // Wait for each piece to be flushed, so a truncation cuts after the bytes really went out.
    await new Promise((r) => res.write(data.subarray(off, Math.min(off + 65536, end)), r));
    if (route.delayMs) await new Promise((r) => setTimeout(r, route.delayMs));
  }
  if (route.truncateAt !== undefined)
    res.socket?.end(); // FIN after the flushed bytes, mid-response
  else res.end();
}

export interface RawMember {
  name: string;
  type?: tar.Header["type"];
  content?: Buffer | string;
  linkname?: string;
  mode?: number;
}

/** Writes exactly these tar members (no checks at all), zstd-compressed, to a Buffer. */
export async function rawTarZst(members: readonly RawMember[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const m of members) {
    const content = m.content === undefined ? undefined : Buffer.from(m.content);
    const header = { name: m.name, type: m.type ?? "file", linkname: m.linkname, mode: m.mode ?? 0o644, mtime: new Date(0) };
    if (content) pack.entry(header, content);
    else pack.entry(header);
  }
  pack.finalize();
  const tarBytes: Buffer[] = [];
  for await (const chunk of pack as AsyncIterable<Buffer>) tarBytes.push(chunk);
  return zstdCompress(Buffer.concat(tarBytes));
}

/** zstd -3 of a buffer (tests only: small inputs). */
export function zstdCompress(input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("zstd", ["-q", "-3", "-c"], { stdio: ["pipe", "pipe", "inherit"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd exited ${code}`))));
    child.stdin.end(input);
  });
}
