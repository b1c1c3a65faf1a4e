// A minimal registry push for tests: monolithic blob uploads (POST + PUT) and manifest PUTs.
import { createHash } from "node:crypto";

export interface PushTarget {
  /** "http://127.0.0.1:<port>" of the registry itself (not a proxy). */
  url: string;
  /** Authorization header for a scope such as "repository:x:pull,push", if the registry needs one. */
  authorization?: (scope: string) => string | undefined;
}

export interface Pushed {
  digest: string;
  size: number;
}

export const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function send(target: PushTarget, repo: string, method: string, url: string, body?: Buffer, contentType?: string): Promise<Response> {
  const headers: Record<string, string> = {};
  const auth = target.authorization?.(`repository:${repo}:pull,push`);
  if (auth) headers.authorization = auth;
  if (contentType) headers["content-type"] = contentType;
  const res = await fetch(url, { method, headers, ...(body ? { body: new Uint8Array(body) } : {}) });
  if (res.status >= 300) throw new Error(`push: ${method} ${url} -> ${res.status} ${await res.text()}`);
  return res;
}

export async function pushBlob(target: PushTarget, repo: string, bytes: Buffer): Promise<Pushed> {
  const digest = sha256(bytes);
  const start = await send(target, repo, "POST", `${target.url}/v2/${repo}/blobs/uploads/`);
  await start.body?.cancel();
  const location = new URL(start.headers.get("location")!, target.url);
  location.searchParams.set("digest", digest);
  const done = await send(target, repo, "PUT", location.toString(), bytes, "application/octet-stream");
  await done.body?.cancel();
  return { digest, size: bytes.length };
}

export async function pushManifest(target: PushTarget, repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<Pushed> {
  const res = await send(target, repo, "PUT", `${target.url}/v2/${repo}/manifests/${reference}`, bytes, mediaType);
  await res.body?.cancel();
  return { digest: sha256(bytes), size: bytes.length };
}
