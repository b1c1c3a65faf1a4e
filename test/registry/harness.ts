// Real registries for tests: Debian's docker-registry (distribution 2.8) on loopback, with no
// auth, with htpasswd basic auth, or with token auth backed by a tiny token server here.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { X509Certificate, createSign, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type Server, createServer } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REGISTRY_BIN = "/usr/bin/docker-registry";

export interface RunningRegistry {
  /** "127.0.0.1:<port>": what goes in an image reference. */
  host: string;
  url: string;
  stop(): Promise<void>;
}

export type RegistryAuth = { kind: "none" } | { kind: "htpasswd"; user: string; password: string } | { kind: "token"; server: TokenServer };

export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** A bcrypt htpasswd line via libc crypt() (perl is always present; apache2-utils is not). */
export function htpasswdLine(user: string, password: string): string {
  const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const salt = `${[...randomBytes(21)].map((b) => alphabet[b % 64]).join("")}e`;
  const res = spawnSync("perl", ["-e", "print crypt($ARGV[0], $ARGV[1])", password, `$2b$05$${salt}`], { encoding: "utf8" });
  if (res.status !== 0 || !res.stdout.startsWith("$2b$")) throw new Error(`bcrypt via perl crypt failed: ${res.stderr}`);
  return `${user}:${res.stdout}\n`;
}

function authConfig(dir: string, auth: RegistryAuth): string {
  if (auth.kind === "htpasswd") {
    const file = join(dir, "htpasswd");
    writeFileSync(file, htpasswdLine(auth.user, auth.password));
    return `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${file}\n`;
  }
  if (auth.kind === "token") {
    const t = auth.server;
    return `auth:\n  token:\n    realm: ${t.url}/token\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.certPath}\n`;
  }
  return "";
}

/** Starts docker-registry on 127.0.0.1:<free port> with storage in a temp dir; stop() removes it all. */
export async function startRegistry(auth: RegistryAuth = { kind: "none" }): Promise<RunningRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "bgr-reg-"));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const config = join(dir, "config.yml");
    writeFileSync(
      config,
      `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${authConfig(dir, auth)}`,
    );
    const child = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => {
      if (stderr.length < 8192) stderr += b.toString();
    });
    const url = `http://127.0.0.1:${port}`;
    const up = await waitUp(url, child);
    if (up) {
      return {
        host: `127.0.0.1:${port}`,
        url,
        stop: async () => {
          await stopChild(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child);
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${stderr.trim().split("\n").pop()}`);
    }
  }
}

async function waitUp(url: string, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) return false;
    try {
      const res = await fetch(`${url}/v2/`);
      await res.body?.cancel();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

export interface TokenServer {
  url: string;
  service: string;
  issuer: string;
  certPath: string;
  /** Token requests served so far. */
  requests: number;
  /** When set, only these users get tokens (HTTP basic to the token endpoint). */
  users?: Record<string, string>;
  /** Issues a token directly (the push helper uses it). */
  issue(scope: string): string;
  stop(): Promise<void>;
}

/** A token server in the distribution style: RS256 JWTs with the signing cert in x5c. */
export async function startTokenServer(users?: Record<string, string>): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), "bgr-tok-"));
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  const gen = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=banger-test-token", "-days", "2", "-keyout", keyPath, "-out", certPath], { encoding: "utf8" });
  if (gen.status !== 0) throw new Error(`openssl failed: ${gen.stderr}`);
  const key = readFileSync(keyPath, "utf8");
  const x5c = new X509Certificate(readFileSync(certPath)).raw.toString("base64");
  const state = { service: "banger-test-registry", issuer: "banger-test-issuer" };
  const issue = (scopes: string[]) => signToken(key, x5c, state.issuer, state.service, scopes);
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname !== "/token") return void res.writeHead(404).end();
    ts.requests++;
    if (ts.users && !basicOk(req.headers.authorization, ts.users)) return void res.writeHead(401).end("{}");
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token: issue(u.searchParams.getAll("scope")), expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const ts: TokenServer = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ...state,
    certPath,
    requests: 0,
    ...(users ? { users } : {}),
    issue: (scope) => issue([scope]),
    stop: async () => {
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ts;
}

function basicOk(header: string | undefined, users: Record<string, string>): boolean {
  if (!header?.startsWith("Basic ")) return false;
  const [user, ...rest] = Buffer.from(header.slice(6), "base64").toString().split(":");
  return user !== undefined && users[user] === rest.join(":");
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

function signToken(keyPem: string, x5c: string, issuer: string, service: string, scopes: string[]): string {
  const now = Math.floor(Date.now() / 1000);
  const access = scopes.flatMap((s) => {
    const [type, name, actions] = s.split(":");
    return type && name ? [{ type, name, actions: (actions ?? "").split(",").filter(Boolean) }] : [];
  });
  const header = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", x5c: [x5c] }));
  const claims = b64url(JSON.stringify({ iss: issuer, sub: "test", aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access }));
  const sig = createSign("RSA-SHA256").update(`${header}.${claims}`).sign(keyPem);
  return `${header}.${claims}.${b64url(sig)}`;
}
