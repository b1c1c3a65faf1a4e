// The terminal rule: every control, C1, bidi and lone surrogate comes out escaped; text is bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { inert, inertJson } from "./text.ts";

/** What a terminal could act on, or what reorders text: must never be printed raw. */
export const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/u;

test("every C0 byte, DEL, C1, bidi control and lone surrogate is escaped", () => {
  for (let c = 0; c < 0xa0; c++) {
    if (c >= 0x20 && c < 0x7f) continue;
    const out = inert(`a${String.fromCharCode(c)}b`);
    assert.doesNotMatch(out, RAW_CONTROL, `U+${c.toString(16)}`);
    assert.doesNotMatch(out, /\n/);
  }
  for (const c of ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u061c", "\u200e", "\u200f", "\ud800", "\udfff"]) {
    assert.doesNotMatch(inert(`x${c}y`), RAW_CONTROL);
  }
  assert.equal(inert("\x1b[31mred\x1b[0m"), "\\e[31mred\\e[0m");
  assert.equal(inert("\x1b]52;c;aGk=\x07"), "\\e]52;c;aGk=\\x07");
  assert.equal(inert("\u009b2J"), "\\x9b2J");
  assert.equal(inert("a\\x1b"), "a\\\\x1b", "a literal backslash is escaped too, so escapes are unambiguous");
  assert.equal(inert("nginx: worker ✓ 😀"), "nginx: worker ✓ 😀", "ordinary text, astral characters included, is kept");
});

test("newlines are kept only when asked; carriage returns never", () => {
  assert.equal(inert("a\nb\r"), "a\\nb\\r");
  assert.equal(inert("a\nb\r", { newlines: true }), "a\nb\\r");
});

test("long text is cut with an ellipsis", () => {
  assert.equal(inert("x".repeat(300)), `${"x".repeat(255)}…`);
  assert.equal(inert("😀".repeat(10), { max: 4 }), "😀😀😀…");
});

test("property: nothing raw survives, length is bounded, inertJson parses back to the same value", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 400 }), fc.integer({ min: 1, max: 300 }), (s, max) => {
      const out = inert(s, { max });
      assert.doesNotMatch(out, RAW_CONTROL);
      assert.doesNotMatch(out, /\n/);
      assert.ok(Array.from(out).length <= max);
      const json = inertJson({ s }, 2);
      assert.doesNotMatch(json.replace(/\n/g, ""), RAW_CONTROL);
      assert.deepEqual(JSON.parse(json), { s });
    }),
  );
});
