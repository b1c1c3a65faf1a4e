// A loopback HTTP proxy in front of a test registry: it records every request (to prove a
// cache hit makes no blob requests) and can misbehave on cue like a hostile or flaky registry.
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

export type Tamper =
  | "corrupt" // same length, one byte flipped
  | "truncate" // full Content-Length announced, half the body sent, then the socket closed
  | "oversize" // the body plus extra bytes, chunked (no Content-Length)
  | "reset" // the socket destroyed before any answer
  | "503"
  | { header: string; value: string };

export interface RegistryProxy {
  host: string;
  url: string;
  requests: Array<{ method: string; path: string }>;
  /** Decides per request whether to misbehave. */
  tamper?: (method: string, path: string) => Tamper | undefined;
  blobRequests(): number;
  stop(): Promise<void>;
}

export async function startProxy(targetUrl: string): Promise<RegistryProxy> {
  const target = new URL(targetUrl);
  const proxy: RegistryProxy = {
    host: "",
    url: "",
    requests: [],
    blobRequests: () => proxy.requests.filter((r) => r.path.includes("/blobs/")).length,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server: Server = createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    proxy.requests.push({ method, path });
    const t = proxy.tamper?.(method, path);
    if (t === "reset") return void req.socket.destroy();
    if (t === "503") return void res.writeHead(503).end();
    forward(target, req, res, t);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  proxy.host = `127.0.0.1:${port}`;
  proxy.url = `http://${proxy.host}`;
  return proxy;
}

function forward(target: URL, req: IncomingMessage, res: ServerResponse, t: Tamper | undefined): void {
  const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (upRes) => {
    if (t === undefined) {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    upRes.on("data", (c: Buffer) => chunks.push(c));
    upRes.on("end", () => misbehave(res, upRes.statusCode ?? 502, { ...upRes.headers }, Buffer.concat(chunks), t));
  });
  up.on("error", () => res.destroy());
  req.pipe(up);
}

function misbehave(res: ServerResponse, status: number, headers: Record<string, string | string[] | undefined>, body: Buffer, t: Tamper): void {
  if (typeof t === "object") {
    headers[t.header] = t.value;
    res.writeHead(status, headers).end(body);
  } else if (t === "corrupt") {
    const copy = Buffer.from(body);
    if (copy.length > 0) copy[copy.length >> 1]! ^= 0xff;
    res.writeHead(status, headers).end(copy);
  } else if (t === "truncate") {
    res.writeHead(status, headers);
    res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
  } else if (t === "oversize") {
    delete headers["content-length"];
    res.writeHead(status, headers).end(Buffer.concat([body, Buffer.alloc(4096, 0x41)]));
  }
}
