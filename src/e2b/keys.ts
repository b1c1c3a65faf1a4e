// The E2B API's key: one per root, `e2b_` and 40 hex digits (the shape the SDK checks), made on
// first use and kept in <root>/api-key (0600, written beside it and renamed in). The server
// holds it in memory: a rotation replaces it there and in the file at once, so the old key stops
// working on the next request. Compared in constant time.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { pidTempName } from "../util/scratch.ts";

const KEY_PATTERN = /^e2b_[0-9a-f]{40}$/;

export const newApiKey = () => `e2b_${randomBytes(20).toString("hex")}`;

/** Whether `given` is `want`, in time that does not depend on where they differ (keys, access tokens). */
export function sameSecret(given: string | null | undefined, want: string): boolean {
  if (!given) return false;
  const got = Buffer.from(given);
  const expected = Buffer.from(want);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

export class ApiKeys {
  private key: string | undefined;

  constructor(private readonly file: string) {}

  /** The key, read from its file, or made and stored when there is none (or it is not a key). */
  current(): string {
    if (this.key) return this.key;
    let stored: string | undefined;
    try {
      stored = readFileSync(this.file, "utf8").trim();
    } catch {
      /* none yet */
    }
    this.key = stored && KEY_PATTERN.test(stored) ? stored : this.store(newApiKey());
    return this.key;
  }

  /** A new key, stored; the old one is refused from now on. */
  rotate(): string {
    this.key = this.store(newApiKey());
    return this.key;
  }

  /** Whether `given` (X-API-KEY) is the key. */
  check(given: string | undefined): boolean {
    return sameSecret(given, this.current());
  }

  private store(key: string): string {
    const tmp = pidTempName(this.file);
    try {
      writeFileSync(tmp, `${key}\n`, { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    return key;
  }
}
