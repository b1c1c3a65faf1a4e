// Registry credentials and tokens: the user's Docker config (`auths` entries with a base64
// `auth` or username/password), `WWW-Authenticate` challenge parsing, and a token cache keyed
// by registry, user and scope so a pull asks the token server once per repository.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { DOCKER_HUB_REGISTRY } from "./ref.ts";

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

/** Where Docker keeps its config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG ? join(env.DOCKER_CONFIG, "config.json") : join(env.HOME || homedir(), ".docker", "config.json");
}

/** Credentials for `registry` from the Docker config file, if it has an `auths` entry for it. */
export function dockerCredentials(registry: string, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const path = dockerConfigPath(env);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined; // no config: anonymous
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidArgument(`${path}: not valid JSON`, "fix or remove the file, or log in again with docker login");
  }
  const auths = (parsed as { auths?: unknown })?.auths;
  if (typeof auths !== "object" || auths === null) return undefined;
  const want = credentialKey(registry);
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    if (credentialKey(key) !== want) continue;
    const creds = decodeAuthEntry(value);
    if (creds) return creds;
  }
  return undefined;
}

/** Docker writes Hub credentials under "https://index.docker.io/v1/"; others as host[:port], maybe with a scheme. */
function credentialKey(key: string): string {
  const host = key
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
  return host === "index.docker.io" || host === "docker.io" ? DOCKER_HUB_REGISTRY : host;
}

function decodeAuthEntry(value: unknown): Credentials | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const entry = value as { auth?: unknown; username?: unknown; password?: unknown };
  if (typeof entry.auth === "string" && entry.auth !== "") {
    const plain = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = plain.indexOf(":");
    if (colon > 0) return { username: plain.slice(0, colon), password: plain.slice(colon + 1) };
  }
  if (typeof entry.username === "string" && typeof entry.password === "string") {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

export function basicHeader(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64")}`;
}

/** Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== "basic" && scheme !== "bearer") return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  for (const p of m[2]!.matchAll(re)) params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
  return { scheme, params };
}

/** Bearer tokens by registry|user|scope, dropped a little before they expire. */
export class TokenCache {
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();

  static key(registry: string, creds: Credentials | undefined, scope: string): string {
    return `${registry}\n${creds?.username ?? ""}\n${scope}`;
  }

  get(key: string, now = Date.now()): string | undefined {
    const hit = this.tokens.get(key);
    if (!hit) return undefined;
    if (hit.expiresAt <= now) {
      this.tokens.delete(key);
      return undefined;
    }
    return hit.token;
  }

  set(key: string, token: string, expiresInSeconds: number, now = Date.now()): void {
    // Registries default to 60 s; keep a margin so a token never expires mid-request.
    const life = Math.max(0, Math.min(expiresInSeconds, 24 * 3600) - 10) * 1000;
    if (life > 0) this.tokens.set(key, { token, expiresAt: now + life });
  }

  delete(key: string): void {
    this.tokens.delete(key);
  }

  clear(): void {
    this.tokens.clear();
  }
}

/** Process-wide cache shared by every pull. */
export const sharedTokenCache = new TokenCache();
