// The registry transport: one RegistryClient per registry+repository. It picks the scheme
// (plain HTTP only for loopback or configured insecure registries), answers 401 challenges
// (basic, or a bearer token from the realm, cached per scope), follows redirects without
// leaking credentials to other hosts or downgrading to HTTP, and retries 429/5xx/resets with
// bounded exponential backoff. Everything read from a registry is size-bounded.
import { BangerError, ErrorCode, cancelled, notFound, throwIfAborted } from "../util/errors.ts";
import { type Credentials, TokenCache, basicHeader, dockerCredentials, parseChallenge, sharedTokenCache } from "./auth.ts";
import { isLoopbackRegistry, registryHost } from "./ref.ts";

export interface ClientOptions {
  /** Registries (host or host:port) allowed over plain HTTP, from config `insecure_registries`. */
  insecureRegistries?: readonly string[];
  /** Explicit credentials; otherwise the Docker config (`$DOCKER_CONFIG` or ~/.docker) is read. */
  credentials?: Credentials;
  /** Environment used to find the Docker config (tests pass their own). */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Retries after the first attempt for 429/5xx/connection resets. Default 4. */
  retries?: number;
  /** First backoff delay; doubles per retry (with jitter). Default 500 ms. */
  retryBaseMs?: number;
  tokenCache?: TokenCache;
}

const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 16 * 1024;
const MAX_TOKEN_BODY = 1024 * 1024;
const MAX_RETRY_AFTER_MS = 10_000;
const RETRYABLE_CODES = new Set(["ECONNRESET", "ETIMEDOUT", "EPIPE", "ECONNREFUSED", "UND_ERR_SOCKET", "UND_ERR_CLOSED", "EAI_AGAIN"]);

export function isInsecureAllowed(registry: string, insecure: readonly string[] = []): boolean {
  if (isLoopbackRegistry(registry)) return true;
  const want = registry.toLowerCase();
  return insecure.some((entry) => {
    const e = entry
      .replace(/^[a-z]+:\/\//i, "")
      .replace(/\/+$/, "")
      .toLowerCase();
    return e === want || e === registryHost(want);
  });
}

export function schemeFor(registry: string, insecure: readonly string[] = []): "http" | "https" {
  return isInsecureAllowed(registry, insecure) ? "http" : "https";
}

/** True for errors worth another attempt: resets, refused/closed sockets, timeouts. */
export function isRetryableNetworkError(err: unknown): boolean {
  if (err instanceof BangerError) return false;
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && RETRYABLE_CODES.has(code)) return true;
    if (e instanceof Error && /terminated|other side closed|socket hang up/i.test(e.message)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export function backoffMs(attempt: number, baseMs: number, retryAfter?: string | null): number {
  const after = retryAfter ? Number(retryAfter) : NaN;
  if (Number.isFinite(after) && after >= 0) return Math.min(after * 1000, MAX_RETRY_AFTER_MS);
  const exp = baseMs * 2 ** attempt;
  return Math.min(exp / 2 + Math.random() * (exp / 2), 30_000);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Reads at most `max` bytes of a body; more is an error (a registry is untrusted). */
export async function readBounded(res: Response, max: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new BangerError(ErrorCode.Integrity, `${what} is too large (${declared} bytes, limit ${max})`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body) {
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      total += chunk.byteLength;
      if (total > max) {
        await res.body.cancel().catch(() => undefined);
        throw new BangerError(ErrorCode.Integrity, `${what} is larger than ${max} bytes`);
      }
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}

async function drain(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

export interface GetOptions {
  accept?: string[];
  signal?: AbortSignal;
  /** Words for error messages, e.g. "manifest alpine:3.20". */
  what: string;
}

export class RegistryClient {
  readonly base: string;
  readonly scope: string;
  private readonly credentials: Credentials | undefined;
  private readonly tokens: TokenCache;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  /** What the registry asked for last: once known, later requests send it up front. */
  private authMode: "none" | "basic" | "bearer" = "none";

  constructor(
    readonly registry: string,
    readonly repository: string,
    private readonly opts: ClientOptions = {},
  ) {
    this.base = `${schemeFor(registry, opts.insecureRegistries)}://${registry}`;
    this.scope = `repository:${repository}:pull`;
    this.credentials = opts.credentials ?? dockerCredentials(registry, opts.env);
    this.tokens = opts.tokenCache ?? sharedTokenCache;
    this.retries = opts.retries ?? 4;
    this.retryBaseMs = opts.retryBaseMs ?? 500;
  }

  /** GETs `/v2/<repository>/<path>`; resolves with a 2xx response (body unread) or throws a BangerError. */
  async get(path: string, o: GetOptions): Promise<Response> {
    const url = `${this.base}/v2/${this.repository}/${path}`;
    const signal = o.signal ?? this.opts.signal;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal);
      let res: Response;
      try {
        res = await this.fetchAuthed(url, o, signal);
      } catch (err) {
        if (attempt < this.retries && isRetryableNetworkError(err)) {
          await sleep(backoffMs(attempt, this.retryBaseMs), signal);
          continue;
        }
        throw this.networkError(err, signal);
      }
      if (res.ok) return res;
      if ((res.status === 429 || res.status >= 500) && attempt < this.retries) {
        await drain(res);
        await sleep(backoffMs(attempt, this.retryBaseMs, res.headers.get("retry-after")), signal);
        continue;
      }
      throw await this.statusError(res, o.what);
    }
  }

  /** Retries `fn` (a whole download) on network errors, with the same backoff as requests. */
  async withRetries<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (signal?.aborted) throw cancelled();
        if (attempt < this.retries && isRetryableNetworkError(err)) {
          await sleep(backoffMs(attempt, this.retryBaseMs), signal);
          continue;
        }
        throw this.networkError(err, signal);
      }
    }
  }

  networkError(err: unknown, signal?: AbortSignal): unknown {
    if (signal?.aborted || (err as Error)?.name === "AbortError") return cancelled();
    if (err instanceof BangerError) return err;
    const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
    const detail = cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
    return new BangerError(
      ErrorCode.Unavailable,
      `cannot reach registry ${this.registry} (${this.base}): ${detail}`,
      "check the registry address and that it is up; plain HTTP is used only for loopback registries and insecure_registries",
      { cause: err },
    );
  }

  private async fetchAuthed(url: string, o: GetOptions, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {};
    if (o.accept) headers.accept = o.accept.join(", ");
    const cachedAuth = this.currentAuth();
    if (cachedAuth) headers.authorization = cachedAuth;
    let res = await this.fetchFollow(url, "GET", headers, signal);
    if (res.status !== 401) return res;
    const challenge = parseChallenge(res.headers.get("www-authenticate"));
    await drain(res);
    if (!challenge) throw this.denied(o.what, "the registry asked for authentication without a usable challenge");
    if (challenge.scheme === "basic") {
      if (!this.credentials) throw this.denied(o.what, "the registry needs a login");
      if (this.authMode === "basic") throw this.denied(o.what, "the registry rejected the credentials");
      this.authMode = "basic";
    } else {
      if (this.authMode === "bearer") this.tokens.delete(this.tokenKey()); // rejected token: fetch a fresh one
      this.authMode = "bearer";
      await this.fetchToken(challenge.params, signal);
    }
    headers.authorization = this.currentAuth()!;
    res = await this.fetchFollow(url, "GET", headers, signal);
    if (res.status === 401) {
      await drain(res);
      throw this.denied(o.what, this.credentials ? "the registry rejected the credentials" : "the registry needs a login");
    }
    return res;
  }

  private tokenKey(): string {
    return TokenCache.key(this.registry, this.credentials, this.scope);
  }

  private currentAuth(): string | undefined {
    if (this.authMode === "basic" && this.credentials) return basicHeader(this.credentials);
    if (this.authMode === "bearer") {
      const token = this.tokens.get(this.tokenKey());
      return token ? `Bearer ${token}` : undefined;
    }
    // A token cached by an earlier pull of the same repository: use it without a 401 first.
    const token = this.tokens.get(this.tokenKey());
    if (token) {
      this.authMode = "bearer";
      return `Bearer ${token}`;
    }
    return undefined;
  }

  /** The anonymous (or credentialed) token flow: GET realm?service=..&scope=.. -> {token, expires_in}. */
  private async fetchToken(params: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const realm = params.realm;
    if (!realm) throw this.denied("token", "the bearer challenge names no realm");
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw this.denied("token", `the token realm ${JSON.stringify(realm)} is not a URL`);
    }
    if (params.service) url.searchParams.set("service", params.service);
    url.searchParams.append("scope", this.scope);
    const headers: Record<string, string> = {};
    if (this.credentials) headers.authorization = basicHeader(this.credentials);
    const res = await this.fetchFollow(url.toString(), "GET", headers, signal);
    if (!res.ok) {
      await drain(res);
      throw this.denied("token", `the token server ${url.origin} answered ${res.status}`);
    }
    const body = await readBounded(res, MAX_TOKEN_BODY, "token response");
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw this.denied("token", "the token server answered with something that is not JSON");
    }
    const token = typeof parsed.token === "string" && parsed.token ? parsed.token : parsed.access_token;
    if (typeof token !== "string" || token === "" || /[\s]/.test(token)) throw this.denied("token", "the token server sent no token");
    const expiresIn = typeof parsed.expires_in === "number" && parsed.expires_in > 0 ? parsed.expires_in : 60;
    this.tokens.set(this.tokenKey(), token, expiresIn);
  }

  /** fetch with manual redirects: no HTTP downgrade, no credentials sent to another origin. */
  private async fetchFollow(url: string, method: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    let current = new URL(url);
    const origin = current.origin;
    for (let hop = 0; ; hop++) {
      this.checkScheme(current);
      // identity: fetch would transparently gunzip a Content-Encoding body and break digests.
      const sendHeaders: Record<string, string> = { ...headers, "accept-encoding": "identity" };
      if (current.origin !== origin) delete sendHeaders.authorization;
      const res = await fetch(current, { method, headers: sendHeaders, redirect: "manual", signal });
      if (res.status < 300 || res.status >= 400 || res.status === 304) return res;
      const location = res.headers.get("location");
      await drain(res);
      if (!location || hop >= MAX_REDIRECTS) {
        throw new BangerError(ErrorCode.Failed, `registry ${this.registry} sent a bad redirect for ${current.pathname}`);
      }
      current = new URL(location, current);
    }
  }

  private checkScheme(url: URL): void {
    if (url.protocol === "https:") return;
    if (url.protocol === "http:" && isInsecureAllowed(url.host, this.opts.insecureRegistries)) return;
    throw new BangerError(
      ErrorCode.Failed,
      `refusing ${url.protocol}//${url.host}: plain HTTP is allowed only for loopback registries and insecure_registries`,
      `add "${url.host}" to insecure_registries in the config if you trust the network to it`,
    );
  }

  private denied(what: string, why: string): BangerError {
    return new BangerError(
      ErrorCode.Failed,
      `registry ${this.registry} denied access to ${this.repository} (${what}): ${why}`,
      `check the name; for private images log in (docker login ${this.registry}) so ~/.docker/config.json or $DOCKER_CONFIG holds credentials`,
    );
  }

  private async statusError(res: Response, what: string): Promise<BangerError> {
    let detail = "";
    try {
      const body = JSON.parse((await readBounded(res, MAX_ERROR_BODY, "error body")).toString("utf8")) as {
        errors?: Array<{ code?: unknown; message?: unknown }>;
      };
      const first = body.errors?.[0];
      if (first) detail = [first.code, first.message].filter((x) => typeof x === "string").join(": ");
    } catch {
      /* not a registry error document */
    }
    const suffix = detail ? ` (${detail.slice(0, 200)})` : "";
    if (res.status === 404) return notFound(`${what} in ${this.registry}/${this.repository}${suffix}`, "check the repository, tag or digest");
    if (res.status === 401 || res.status === 403) return this.denied(what, `status ${res.status}${suffix}`);
    if (res.status === 429 || res.status >= 500) {
      return new BangerError(ErrorCode.Unavailable, `registry ${this.registry} answered ${res.status} for ${what}${suffix}`, "try again later");
    }
    return new BangerError(ErrorCode.Failed, `registry ${this.registry} answered ${res.status} for ${what}${suffix}`);
  }
}
