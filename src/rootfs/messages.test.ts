// Image paths in refusals: a tar reader's message names the member it refuses, and an image
// path may legally hold C1 controls (U+0080-U+009F: CSI, NEL, ...), which terminals obey. Every
// such message shows the path through util/paths.ts `shown`, so it stays one printable line.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { BangerError } from "../util/errors.ts";
import { extractRootfsTar, flattenLayers, injectAgent } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-messages-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** CSI "2J" (clear screen) and NEL, as C1 characters. */
const H = "\u009b2J\u0085";
const pax = (records: Record<string, string>) => Object.fromEntries(Object.entries(records).map(([k, v]) => [k, Buffer.from(v)]));

async function refusedPrintably(work: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(err instanceof BangerError, String(err));
    assert.match(err.message, pattern);
    assert.doesNotMatch(`${err.message}${err.hint ?? ""}`, /[\x00-\x1f\x7f-\x9f]/, `one printable line: ${JSON.stringify(err.message)}`);
    assert.ok(err.message.includes("\\u009b2J\\u0085"), `the path is shown escaped: ${JSON.stringify(err.message)}`);
    return true;
  });
}

const dockerExport = (entries: RawTarEntry[]) => extractRootfsTar(Readable.from([buildTar(entries)]), join(root, `case-${n++}`));
const ociLayer = (entries: RawTarEntry[]) => flattenLayers([Readable.from([buildTar(entries)])], join(root, `case-${n++}`));

describe("refusals show image paths escaped", () => {
  const exportCases: Array<[string, RawTarEntry[], RegExp]> = [
    [
      "a member twice",
      [
        { name: H, type: "0" },
        { name: H, type: "0" },
      ],
      /appears twice/,
    ],
    [
      "a member under a file",
      [
        { name: H, type: "0" },
        { name: `${H}/x`, type: "0" },
      ],
      /lies under .*not a directory/,
    ],
    ["a hardlink to a missing member", [{ name: `h${H}`, type: "1", linkname: "missing" }], /not earlier in the tar/],
    [
      "a hardlink to a directory",
      [
        { name: "d/", type: "5" },
        { name: `h${H}`, type: "1", linkname: "d" },
      ],
      /not a regular file/,
    ],
    ["a hardlink target with '..'", [{ name: `h${H}`, type: "1", linkname: "../x" }], /hardlink target of .*".." component/],
    ["a symlink target with a newline", [{ name: `l${H}`, type: "2", linkname: "a\nb" }], /symlink target of .*control byte/],
    ["an invalid owner", [{ name: "p", type: "0", pax: pax({ path: H, uid: "-1" }) }], /invalid uid/],
    ["an xattr name with a newline", [{ name: "p", type: "0", pax: pax({ path: H, "SCHILY.xattr.user.a\nb": "v" }) }], /control byte/],
  ];
  for (const [what, entries, pattern] of exportCases) it(`docker export: ${what}`, () => refusedPrintably(dockerExport(entries), pattern));

  const layerCases: Array<[string, RawTarEntry[], RegExp]> = [
    [
      "a member through a symlink",
      [
        { name: H, type: "2", linkname: "x" },
        { name: `${H}/f`, type: "0" },
      ],
      /goes through the symlink/,
    ],
    [
      "a member through a file",
      [
        { name: H, type: "0" },
        { name: `${H}/f`, type: "0" },
      ],
      /not a directory/,
    ],
    ["a hardlink to itself", [{ name: H, type: "1", linkname: H }], /points at itself/],
    ["a hardlink to a missing member", [{ name: "h", type: "1", linkname: H }], /does not exist/],
    [
      "a hardlink to a directory",
      [
        { name: `${H}/`, type: "5" },
        { name: "h", type: "1", linkname: H },
      ],
      /points at the directory/,
    ],
    [
      "an invalid whiteout",
      [
        { name: `${H}/`, type: "5" },
        { name: `${H}/.wh..`, type: "0" },
      ],
      /invalid whiteout/,
    ],
  ];
  for (const [what, entries, pattern] of layerCases) it(`OCI layer: ${what}`, () => refusedPrintably(ociLayer(entries), pattern));

  // Within the name rule (4095 bytes), but past PATH_MAX once under the host staging directory:
  // the host's own error names the path, and must show it escaped too.
  const deep = `${Array(16)
    .fill(`${H}${"d".repeat(247)}`)
    .join("/")}/${"f".repeat(26)}`; // 4090 bytes
  it("docker export: a path the host cannot stage", () => refusedPrintably(dockerExport([{ name: "p", type: "0", pax: pax({ path: deep }) }]), /ENAMETOOLONG/));
  it("OCI layer: a path the host cannot stage", () => refusedPrintably(ociLayer([{ name: "p", type: "0", pax: pax({ path: deep }) }]), /ENAMETOOLONG/));

  it("agent injection: /sbin resolving to a file", async () => {
    const tree = await dockerExport([
      { name: "sbin", type: "2", linkname: H },
      { name: H, type: "0" },
    ]);
    await refusedPrintably(injectAgent(tree, { agentPath: "/bin/sh" }), /where banger needs a directory/);
  });
});
