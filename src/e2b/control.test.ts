import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { HttpError } from "./http.ts";
import { page, parseMetadataQuery } from "./control.ts";

describe("the control plane's list queries", () => {
  it("reads the metadata filter as the SDK sends it: pairs URL-encoded, then the whole string encoded again", () => {
    // What Sandbox.list({ query: { metadata } }) puts in ?metadata= (after the URL's own decoding).
    const sent = (m: Record<string, string>) => new URLSearchParams(Object.fromEntries(Object.entries(m).map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)]))).toString();
    const metadata = { user: "a b&c=d", "k/ü": "100%" };
    assert.deepEqual(parseMetadataQuery(sent(metadata)), metadata);
    assert.equal(parseMetadataQuery(null), undefined);
    assert.equal(parseMetadataQuery(""), undefined);
    assert.throws(
      () => parseMetadataQuery("k=%E0%A4%A"),
      (err: unknown) => err instanceof HttpError && err.status === 400,
    );
  });

  it("pages by the last id: every item once, no token after the last page, a foreign token refused", () => {
    const items = ["a", "b", "c", "d", "e"].map((id) => ({ id }));
    const seen: string[] = [];
    let token: string | null = null;
    for (let i = 0; i < 10; i++) {
      const p: { items: { id: string }[]; next?: string } = page(items, "2", token);
      seen.push(...p.items.map((x) => x.id));
      if (!p.next) break;
      token = p.next;
    }
    assert.deepEqual(seen, ["a", "b", "c", "d", "e"]);
    assert.deepEqual(page(items, "5", null), { items });
    assert.deepEqual(page(items, null, null).items.length, 5);
    for (const limit of ["0", "101", "x", "1.5"])
      assert.throws(
        () => page(items, limit, null),
        (err: unknown) => err instanceof HttpError && err.status === 400,
        limit,
      );
    assert.throws(() => page(items, "2", "gone"), /nextToken is not from this list/);
  });
});
