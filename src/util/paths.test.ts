import assert from "node:assert/strict";
import { posix } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { isRefused, keptXattrs, linkTarget, MAX_NAME_BYTES, MAX_PATH_BYTES, memberPath, shown, symlinkEscapeProblem, xattrName } from "./paths.ts";

/** Every byte the rule refuses: NUL, the C0 controls and DEL. */
const CONTROL_BYTES = [...Array(0x20).keys(), 0x7f].map((b) => String.fromCharCode(b));
const CONTROL = /[\x00-\x1f\x7f]/;

/** Path-ish strings: components drawn from the tricky ones, any unicode and control bytes, joined by "/". */
const component = fc.oneof(
  fc.constantFrom("", ".", "..", "...", "-rf", "!cmd", '"', "\\", "<1>", "a b", "#x", "x".repeat(300)),
  fc.constantFrom(...CONTROL_BYTES),
  fc.string({ unit: "binary", maxLength: 12 }),
  fc.string({ unit: "grapheme-ascii", maxLength: 12 }),
);
const pathish = fc.tuple(fc.boolean(), fc.array(component, { maxLength: 8 })).map(([abs, parts]) => `${abs ? "/" : ""}${parts.join("/")}`);

/** Whether the one line a refusal says can be printed as is: no control byte, C1 control or newline. */
function printable(line: string): boolean {
  return !/[\x00-\x1f\x7f-\x9f]/.test(line);
}

test("memberPath: every result is relative, normalised, free of '..' and control bytes, and stays under any root", () => {
  fc.assert(
    fc.property(pathish, fc.constantFrom("/srv/root", "/", "/a/b/c"), (raw, root) => {
      const p = memberPath(raw);
      if (isRefused(p)) {
        assert.ok(printable(p.refused), `refusal ${JSON.stringify(p.refused)} is one printable line`);
        return;
      }
      assert.ok(!p.startsWith("/"));
      assert.ok(!CONTROL.test(p));
      if (p !== "") {
        assert.equal(posix.normalize(p), p);
        for (const c of p.split("/")) {
          assert.ok(c !== "" && c !== "." && c !== "..", `component ${JSON.stringify(c)} in ${JSON.stringify(p)}`);
          assert.ok(Buffer.byteLength(c) <= MAX_NAME_BYTES);
        }
      }
      assert.ok(Buffer.byteLength(p) <= MAX_PATH_BYTES);
      const joined = posix.join(root, p);
      assert.ok(joined === root || joined.startsWith(root.endsWith("/") ? root : `${root}/`), `${joined} is under ${root}`);
      assert.equal(memberPath(p), p, "idempotent");
    }),
    { numRuns: 5000 },
  );
});

test("memberPath refuses every control byte, absolute paths and '..' with one line showing the name escaped", () => {
  for (const c of CONTROL_BYTES) {
    const p = memberPath(`etc/a${c}b`);
    assert.ok(isRefused(p), `byte 0x${c.charCodeAt(0).toString(16)}`);
    assert.match(p.refused, new RegExp(`contains the control byte 0x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
    assert.ok(printable(p.refused), p.refused);
  }
  assert.deepEqual(memberPath("/etc/passwd"), { refused: 'path "/etc/passwd" is absolute' });
  assert.deepEqual(memberPath("a/../b"), { refused: 'path "a/../b" has a ".." component' });
  assert.deepEqual(memberPath("x\n!touch /tmp/pwned"), { refused: 'path "x\\n!touch /tmp/pwned" contains the control byte 0x0a' });
  assert.equal(memberPath("./modules//6.1/kernel/"), "modules/6.1/kernel");
  assert.equal(memberPath("./"), "");
  assert.equal(memberPath('-f !x "q" \\ <1> $(id)'), '-f !x "q" \\ <1> $(id)', "other bytes are kept literally");
  assert.ok(isRefused(memberPath("a".repeat(256))));
  assert.ok(isRefused(memberPath("a/".repeat(2048))));
});

test("linkTarget keeps targets as written but refuses control bytes, empty and over-long ones", () => {
  fc.assert(
    fc.property(pathish, (raw) => {
      const t = linkTarget(raw);
      if (isRefused(t)) return assert.ok(printable(t.refused));
      assert.equal(t, raw);
      assert.ok(t !== "" && !CONTROL.test(t) && Buffer.byteLength(t) <= MAX_PATH_BYTES);
    }),
    { numRuns: 3000 },
  );
  for (const c of CONTROL_BYTES) assert.ok(isRefused(linkTarget(`../x${c}`)));
});

/** Resolves `target` from the link's directory the way the kernel would if no other link interferes. */
function resolvesInside(linkPath: string, target: string): boolean {
  const root = "/r";
  const resolved = posix.resolve(root, posix.dirname(linkPath), target);
  return resolved === root || resolved.startsWith(`${root}/`);
}

/** Whether resolving `target` one component at a time passes above the root at some step. */
function someStepLeaves(linkPath: string, target: string): boolean {
  const parts = target.split("/");
  return parts.some((_, i) => !resolvesInside(linkPath, parts.slice(0, i + 1).join("/") || "."));
}

test("symlinkEscapeProblem: an accepted target never resolves outside the root", () => {
  fc.assert(
    fc.property(pathish, pathish, (rawLink, rawTarget) => {
      const link = memberPath(rawLink);
      const target = linkTarget(rawTarget);
      if (isRefused(link) || link === "" || isRefused(target)) return;
      if (symlinkEscapeProblem(link, target) === undefined) assert.ok(resolvesInside(link, target), `${link} -> ${target}`);
      else assert.ok(target.startsWith("/") || someStepLeaves(link, target), `${link} -> ${target} was refused but never leaves`);
    }),
    { numRuns: 5000 },
  );
  assert.equal(symlinkEscapeProblem("modules/6.1/build", "../6.1/kernel"), undefined);
  assert.match(symlinkEscapeProblem("modules/x", "../../etc") ?? "", /escapes the root/);
  assert.match(symlinkEscapeProblem("modules/x", "/usr/src/linux") ?? "", /is absolute/);
});

test("xattr names: kept namespaces pass, others drop, control bytes and malformed names are refused", () => {
  assert.equal(xattrName("security.capability"), "security.capability");
  assert.equal(xattrName('user.-f /etc/shadow "x"'), 'user.-f /etc/shadow "x"');
  assert.equal(xattrName("trusted.overlay.opaque"), undefined);
  assert.equal(xattrName("system.posix_acl_access"), undefined);
  for (const bad of ["-f", "user.", ".x", "", `user.${"a".repeat(251)}`]) assert.ok(isRefused(xattrName(bad)), JSON.stringify(bad));
  for (const c of CONTROL_BYTES) {
    for (const name of [`user.a${c}`, `trusted.a${c}`]) {
      const r = xattrName(name);
      assert.ok(isRefused(r) && printable(r.refused), JSON.stringify(name));
    }
  }
  const many = new Map([...Array(33).keys()].map((i) => [`user.k${i}`, Buffer.from("v")]));
  assert.deepEqual(keptXattrs(many), { refused: "more than 32 xattrs" });
  assert.deepEqual(keptXattrs(new Map([["user.big", Buffer.alloc(70 * 1024)]])), { refused: "xattrs larger than 65536 bytes" });
});

test("shown escapes C0, DEL and C1 controls so a terminal sees none", () => {
  fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => assert.ok(printable(shown(s)))));
  assert.equal(shown("a\u001b[2J\u009bb\u007f"), '"a\\u001b[2J\\u009bb\\u007f"');
});
