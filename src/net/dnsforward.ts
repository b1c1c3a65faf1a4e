// Resolving names outside `.vm` for guests, through the host's upstream resolvers. Guests
// are untrusted, so everything is bounded: answers are cached (TTLs clamped, a cap on
// entries and on bytes of memory, oldest out first), one upstream query serves every guest asking the
// same question at once, each client has a cap on questions waiting and so does the whole
// forwarder, and an answer that does not come within the deadline is a SERVFAIL. Upstreams
// are asked in order; one that fails (refused, silent, unreachable) waits its turn behind the
// others for a while.
import dnsPacket from "dns-packet";
import type { Answer, Question } from "dns-packet";
import { dnsName, exchange, inVmDomain, UpstreamError, type Upstream, type UpstreamReply } from "./dnsupstream.ts";

export interface ForwarderLimits {
  /** Longest an answer is cached, and the largest TTL handed to a guest (s). */
  maxTtl: number;
  /** Longest a "no such name / no such record" answer is cached (s). */
  maxNegativeTtl: number;
  cacheEntries: number;
  cacheBytes: number;
  /** Questions one client may have waiting on upstreams (more get SERVFAIL at once). */
  inflightPerClient: number;
  /** Upstream questions in flight for everyone. */
  inflightTotal: number;
  /** Deadline for an answer, all upstreams and the TCP retry included (ms). */
  timeoutMs: number;
  /** Deadline for one upstream before the next is tried (ms). */
  attemptMs: number;
  /** How long a failed upstream is asked only after the others (ms). */
  downMs: number;
}

export const FORWARDER_LIMITS: ForwarderLimits = {
  maxTtl: 300,
  maxNegativeTtl: 60,
  cacheEntries: 4096,
  cacheBytes: 4 * 1024 * 1024,
  inflightPerClient: 64,
  inflightTotal: 256,
  timeoutMs: 4000,
  attemptMs: 2000,
  downMs: 30_000,
};

/** An answer for a guest: the upstream's rcode (NOERROR or NXDOMAIN) and records, TTLs clamped. */
export interface Resolved {
  rcode: number;
  answers: Answer[];
  authorities: Answer[];
}

interface CacheEntry extends Resolved {
  expires: number;
  stored: number;
  bytes: number;
}

/** The forwarder is out of room for this client or for everyone: answer SERVFAIL, ask nobody. */
export class ForwarderBusy extends Error {}
/** There is no upstream to ask (none in resolv.conf, or `dns.upstream` is empty): REFUSED. */
export class NoUpstreams extends Error {}

export interface ForwarderOptions {
  /** Read on every question, so a changed resolv.conf is used at once. */
  upstreams: () => readonly Upstream[];
  limits?: Partial<ForwarderLimits>;
  /** Clock (tests move it to expire cache entries). */
  now?: () => number;
}

const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;

export class Forwarder {
  readonly limits: ForwarderLimits;
  readonly #upstreams: () => readonly Upstream[];
  readonly #now: () => number;
  readonly #cache = new Map<string, CacheEntry>();
  #cacheBytes = 0;
  readonly #inflight = new Map<string, Promise<Resolved>>();
  readonly #perClient = new Map<string, number>();
  readonly #downUntil = new Map<string, number>();
  /** Upstream exchanges started (tests and `net status` read it). */
  upstreamQueries = 0;

  constructor(opts: ForwarderOptions) {
    this.#upstreams = opts.upstreams;
    this.limits = { ...FORWARDER_LIMITS, ...opts.limits };
    this.#now = opts.now ?? Date.now;
  }

  get cacheSize(): { entries: number; bytes: number } {
    return { entries: this.#cache.size, bytes: this.#cacheBytes };
  }

  upstreamList(): readonly Upstream[] {
    return this.#upstreams();
  }

  /** The answer to `q` for `client` (its address): from the cache, or from an upstream. */
  async resolve(q: Question, client: string): Promise<Resolved> {
    const key = `${q.class ?? "IN"} ${q.type} ${dnsName(q.name)}`;
    const cached = this.#fromCache(key);
    if (cached) return cached;
    if (this.#upstreams().length === 0) throw new NoUpstreams("no upstream resolvers (none in resolv.conf, or dns.upstream is empty)");
    const waiting = this.#perClient.get(client) ?? 0;
    if (waiting >= this.limits.inflightPerClient) throw new ForwarderBusy(`${client} has ${waiting} questions waiting`);
    let pending = this.#inflight.get(key);
    if (!pending) {
      if (this.#inflight.size >= this.limits.inflightTotal) throw new ForwarderBusy(`${this.#inflight.size} questions waiting on upstreams`);
      pending = this.#ask(q).then((r) => {
        this.#store(key, r);
        return r;
      });
      const p = pending;
      this.#inflight.set(key, p);
      void p.catch(() => undefined).finally(() => this.#inflight.delete(key));
    }
    this.#perClient.set(client, waiting + 1);
    try {
      return await pending;
    } finally {
      const left = (this.#perClient.get(client) ?? 1) - 1;
      if (left <= 0) this.#perClient.delete(client);
      else this.#perClient.set(client, left);
    }
  }

  /** Asks the upstreams in turn (healthy ones first) until one answers NOERROR or NXDOMAIN. */
  async #ask(q: Question): Promise<Resolved> {
    // Deadlines run on the real clock; the injected one only ages the cache.
    const deadline = Date.now() + this.limits.timeoutMs;
    const now = Date.now();
    const all = this.#upstreams();
    const order = [...all].sort((a, b) => Number(this.#isDown(a, now)) - Number(this.#isDown(b, now)));
    let last: unknown;
    for (const up of order) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      this.upstreamQueries++;
      try {
        const reply = await exchange(up, q, Math.min(left, this.limits.attemptMs));
        const rcode = (reply.flags ?? 0) & 0xf;
        if (rcode === RCODE_NOERROR || rcode === RCODE_NXDOMAIN) {
          this.#downUntil.delete(upstreamKey(up));
          return this.#clamp(reply, rcode, q);
        }
        last = new UpstreamError(`upstream answered ${reply.rcode ?? rcode}`, false);
      } catch (err) {
        last = err;
        if (err instanceof UpstreamError && err.down) this.#downUntil.set(upstreamKey(up), Date.now() + this.limits.downMs);
      }
    }
    throw last ?? new UpstreamError(`no answer in ${this.limits.timeoutMs} ms`, false);
  }

  #isDown(up: Upstream, now: number): boolean {
    return (this.#downUntil.get(upstreamKey(up)) ?? 0) > now;
  }

  /**
   * The reply's records for a guest: OPT and the additional section dropped, answers only on
   * the question's CNAME chain (records for names nobody asked are a poisoning attempt on
   * any cache a guest runs), nothing owned by a `.vm` name, TTLs at most maxTtl.
   */
  #clamp(reply: UpstreamReply, rcode: number, q: Question): Resolved {
    const wanted = (rs: Answer[]) => rs.filter((r) => r.type !== "OPT" && !inVmDomain(r.name));
    const answers = wanted(onChain(q, reply.answers ?? []));
    const max = rcode === RCODE_NOERROR && answers.length > 0 ? this.limits.maxTtl : this.limits.maxNegativeTtl;
    const clampAll = (rs: Answer[]) => rs.map((r) => ({ ...r, ttl: Math.min((r as { ttl?: number }).ttl ?? 0, max) }) as Answer);
    const resolved = { rcode, answers: clampAll(answers), authorities: clampAll(wanted(reply.authorities ?? [])) };
    dnsPacket.encode({ type: "response", ...resolved }); // throws (SERVFAIL, nothing cached) if a record cannot be re-encoded
    return resolved;
  }

  #store(k: string, r: Resolved): void {
    const ttls = [...r.answers, ...r.authorities].map((a) => (a as { ttl?: number }).ttl ?? 0);
    // A negative answer without an SOA to say how long: cache it briefly.
    const ttl = ttls.length > 0 ? Math.min(...ttls) : Math.min(5, this.limits.maxNegativeTtl);
    if (ttl <= 0) return;
    const bytes = k.length + dnsPacket.encodingLength({ answers: r.answers, authorities: r.authorities }) + HEAP_PER_OBJECT * objects([...r.answers, ...r.authorities]);
    if (bytes > this.limits.cacheBytes) return;
    this.#drop(k);
    const now = this.#now();
    this.#cache.set(k, { ...r, expires: now + ttl * 1000, stored: now, bytes });
    this.#cacheBytes += bytes;
    // Oldest first out: Map keeps insertion order, and a hit re-inserts its entry.
    for (const [old] of this.#cache) {
      if (this.#cache.size <= this.limits.cacheEntries && this.#cacheBytes <= this.limits.cacheBytes) break;
      this.#drop(old);
    }
  }

  #drop(k: string): void {
    const e = this.#cache.get(k);
    if (!e) return;
    this.#cache.delete(k);
    this.#cacheBytes -= e.bytes;
  }

  #fromCache(k: string): Resolved | undefined {
    const e = this.#cache.get(k);
    if (!e) return undefined;
    const now = this.#now();
    if (e.expires <= now) {
      this.#drop(k);
      return undefined;
    }
    this.#cache.delete(k);
    this.#cache.set(k, e);
    const aged = Math.floor((now - e.stored) / 1000);
    const age = (rs: Answer[]) => rs.map((a) => ({ ...a, ttl: Math.max(0, ((a as { ttl?: number }).ttl ?? 0) - aged) }) as Answer);
    return { rcode: e.rcode, answers: age(e.answers), authorities: age(e.authorities) };
  }
}

const upstreamKey = (up: Upstream) => `${up.host}#${up.port}`;

/** The answers owned by the question's name or a CNAME target reached from it, in order; DNAMEs above the name. */
function onChain(q: Question, answers: Answer[]): Answer[] {
  const byOwner = new Map<string, Answer[]>();
  for (const a of answers) {
    const owner = dnsName(a.name);
    const list = byOwner.get(owner);
    if (list) list.push(a);
    else byOwner.set(owner, [a]);
  }
  const start = dnsName(q.name);
  const keep = new Set<Answer>();
  const reached = new Set([start]);
  for (const name of reached) {
    // a Set iterates what is added during the loop
    for (const a of byOwner.get(name) ?? []) {
      keep.add(a);
      if (a.type === "CNAME" && typeof a.data === "string") reached.add(dnsName(a.data));
    }
  }
  const labels = start.split(".");
  for (let i = 1; i < labels.length; i++) for (const a of byOwner.get(labels.slice(i).join(".")) ?? []) if (a.type === "DNAME") keep.add(a);
  return answers.filter((a) => keep.has(a));
}

/**
 * Heap bytes each JS object, array or Buffer of a cached answer holds beyond its wire bytes
 * (Node 20, measured: an A record is ~160 bytes of heap for 20 on the wire, an empty TXT
 * string ~105 for 1), so a reply of many tiny pieces cannot pass 100 times its size for the
 * wire bytes it came in.
 */
const HEAP_PER_OBJECT = 144;

function objects(v: unknown): number {
  if (typeof v !== "object" || v === null) return 0;
  if (Buffer.isBuffer(v)) return 1;
  let n = 1;
  for (const x of Array.isArray(v) ? v : Object.values(v)) n += objects(x);
  return n;
}
