// The fast path of `vm run`'s end: telling, without fetching the workspace back, that the
// guest changed nothing in it. Right after the copy the guest's clock is read as a file's
// change time (ctime, nanoseconds); afterwards every entry's ctime is listed. Any write,
// create, delete, rename, chmod or chown sets some entry's ctime (a deletion its
// directory's) to the kernel's now, and no program can set a ctime back, so: every ctime
// older than the mark means unchanged. Anything else (an equal or newer time, a tool
// missing in the image, output that does not parse) means "look properly" (a full export).
// The guest's output is untrusted: it can only make banger look properly.

/** Runs argv in the guest as root; its exit code and stdout. */
export type GuestRun = (argv: string[]) => Promise<{ code: number; stdout: string }>;

/**
 * What a probe may cost: the guest's output is untrusted, so at most this much is held (a
 * `find` of ~1M entries fits) and the guest gets this long; past either the probe gives up,
 * which means "look properly".
 */
export const PROBE_LIMITS = { maxBytes: 64 * 1024 ** 2, timeoutMs: 120_000 };

/** Collects a guest command's stdout up to `maxBytes`; `over` turns true (and stays) once more came. */
export class ProbeOutput {
  #chunks: Buffer[] = [];
  #bytes = 0;
  over = false;
  constructor(private readonly maxBytes: number) {}
  push(data: Buffer): void {
    if (this.over) return;
    if (this.#bytes + data.length > this.maxBytes) {
      this.over = true;
      this.#chunks = [];
      return;
    }
    this.#chunks.push(data);
    this.#bytes += data.length;
  }
  text(): string {
    return Buffer.concat(this.#chunks).toString("utf8");
  }
}

/** Prints the guest's now as a ctime (a fresh file's): the mark taken right after the copy. */
const MARK_SCRIPT = 'f=/tmp/.banger-mark-$$ && : > "$f" && stat -c %z "$f"; s=$?; rm -f "$f"; exit $s';

/** The guest's now, or undefined when the image cannot tell (no sh, stat or /tmp). */
export async function guestMark(run: GuestRun): Promise<string | undefined> {
  const r = await run(["sh", "-c", MARK_SCRIPT]).catch(() => undefined);
  const mark = r?.code === 0 ? r.stdout.trim() : "";
  return parseStatTime(mark) === undefined ? undefined : mark;
}

/**
 * The mark after a copy the host wrote (the workspace disk): its entries carry the host's
 * change times, and the guest's clock may be a little behind the host's (set from the RTC, in
 * whole seconds). Waits until the guest's now passes `hostNowMs` (every host time in the copy
 * is before it), at most `maxWaitMs`; undefined when it does not (the end then looks properly).
 */
export async function guestMarkAfter(run: GuestRun, hostNowMs: number, maxWaitMs = 3000): Promise<string | undefined> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const mark = await guestMark(run);
    if (mark === undefined) return undefined;
    const behindMs = Number(BigInt(hostNowMs) * 1_000_000n - parseStatTime(mark)!) / 1e6;
    if (behindMs < 0) return mark;
    if (Date.now() + behindMs > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(behindMs) + 10));
  }
}

/** True when nothing under `dir` changed since `mark`; false when it may have (or cannot be told). */
export async function unchangedSince(run: GuestRun, dir: string, mark: string): Promise<boolean> {
  const r = await run(["find", dir, "-exec", "stat", "-c", "%z", "{}", "+"]).catch(() => undefined);
  return r?.code === 0 && allOlder(r.stdout, mark);
}

/** Every line of `listing` a time strictly before `mark` (and at least one line). */
export function allOlder(listing: string, mark: string): boolean {
  const limit = parseStatTime(mark);
  const lines = listing.split("\n").filter((l) => l !== "");
  if (limit === undefined || lines.length === 0) return false;
  return lines.every((l) => {
    const t = parseStatTime(l);
    return t !== undefined && t < limit;
  });
}

/** `stat -c %z`'s `2026-12-03 18:14:06.686094672 +0000` as nanoseconds since the epoch. */
export function parseStatTime(s: string): bigint | undefined {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{9}) ([+-])(\d\d)(\d\d)$/.exec(s.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, ns, sign, oh, om] = m;
  const utcMs = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec));
  if (Number.isNaN(utcMs)) return undefined;
  const offsetMin = (sign === "-" ? -1 : 1) * (Number(oh) * 60 + Number(om));
  return (BigInt(utcMs) - BigInt(offsetMin) * 60_000n) * 1_000_000n + BigInt(ns!);
}
