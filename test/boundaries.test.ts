// The layout rules (test/boundaries.ts) hold for src/, and the checker itself fires on each
// rule: a small tree in a temporary directory breaks each one once.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { checkTree, importsOf, NO_INDEX, type Violation } from "./boundaries.ts";
import { REPO } from "./helpers.ts";

const show = (vs: Violation[]) => vs.map((v) => `[${v.rule}] ${v.message}`).join("\n");

describe("source layout", () => {
  it("src/ keeps the boundary rules (client, index, cycle, size)", () => {
    const violations = checkTree(join(REPO, "src"));
    assert.equal(violations.length, 0, `layout rules broken (see CONTRIBUTING.md, Layout):\n${show(violations)}`);
  });

  it("the folders exempt from the index rule really have no index.ts", async () => {
    const { existsSync } = await import("node:fs");
    for (const folder of NO_INDEX) assert.equal(existsSync(join(REPO, "src", folder, "index.ts")), false, `src/${folder} has an index.ts: drop it from NO_INDEX`);
  });
});

describe("boundary checker", () => {
  function tree(files: Record<string, string>): { root: string; cleanup: () => void } {
    const root = mkdtempSync(join(tmpdir(), "bgr-layout-"));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
  }

  it("passes a tree that keeps the rules", () => {
    const t = tree({
      "api/index.ts": 'export type { X } from "./x.ts";\n',
      "api/x.ts": "export type X = 1;\n",
      "cli/main.ts": 'import type { X } from "../api/index.ts";\nimport { h } from "../util/h.ts";\n',
      "util/h.ts": "export const h = 1;\n",
      "daemon/index.ts": 'export { s } from "./s.ts";\n',
      "daemon/s.ts": 'import type { X } from "../api/index.ts";\nexport const s = 1;\n',
      "cli/main.test.ts": 'import { s } from "../daemon/s.ts";\n', // tests are not checked
    });
    try {
      assert.deepEqual(checkTree(t.root), []);
    } finally {
      t.cleanup();
    }
  });

  it("fires on each rule, naming the file, the line and the target", () => {
    const long = `// a long file\n${"export const a = 1;\n".repeat(401)}`;
    const t = tree({
      "cli/run.ts": '// header\nimport { launch } from "../daemon/launch.ts";\n',
      "webui/page.ts": 'const m = await import("../store/index.ts");\n',
      "store/index.ts": "export const s = 1;\n",
      // guest/ is neither daemon/ nor store/, yet not client-side: the allowlist catches it;
      // api/ is on the list, so the first import is fine.
      "cli/stats.ts": '// header\nimport type { VmStats } from "../api/index.ts";\nimport { cpuJiffies } from "../guest/index.ts";\n',
      "api/index.ts": "export type VmStats = 1;\n",
      "guest/index.ts": "export const cpuJiffies = 1;\n",
      "daemon/launch.ts": "export const launch = 1;\n",
      "a/index.ts": 'export { b } from "../b/index.ts";\n',
      "b/index.ts": 'import type { A } from "../c/index.ts";\nexport const b = 1;\n',
      "c/index.ts": 'import { b } from "../a/index.ts";\nexport type A = 1;\n',
      "d/big.ts": long,
      "d/explained.ts": `// over 400 lines: one table, read top to bottom\n${long}`,
    });
    try {
      const vs = checkTree(t.root);
      const messages = show(vs);
      assert.match(messages, /\[client\] src\/cli\/run\.ts:2 -> src\/daemon\/launch\.ts: cli\/ may not import daemon\//);
      assert.match(messages, /\[client\] src\/webui\/page\.ts:1 -> src\/store\/index\.ts: webui\/ may not import store\//);
      assert.match(messages, /\[client\] src\/cli\/stats\.ts:3 -> src\/guest\/index\.ts: cli\/ may not import guest\//);
      assert.doesNotMatch(messages, /src\/cli\/stats\.ts:2/);
      assert.match(messages, /\[index\] src\/cli\/run\.ts:2 -> src\/daemon\/launch\.ts: import daemon\/index\.ts, not a file inside daemon\/ \(daemon\/ has no index\.ts: add one\)/);
      assert.match(
        messages,
        /\[cycle\] folder cycle a -> b -> c -> a:\n {2}src\/a\/index\.ts:1 -> src\/b\/index\.ts\n {2}src\/b\/index\.ts:1 -> src\/c\/index\.ts\n {2}src\/c\/index\.ts:1 -> src\/a\/index\.ts/,
      );
      assert.match(messages, /\[size\] src\/d\/big\.ts: 403 lines/);
      assert.doesNotMatch(messages, /explained\.ts/);
      assert.deepEqual(vs.map((v) => v.rule).sort(), ["client", "client", "client", "cycle", "index", "size"]);
    } finally {
      t.cleanup();
    }
  });

  it("reads static, re-export, side-effect and dynamic imports, not comments or packages", () => {
    const text = [
      '// import { no } from "../x/comment.ts";',
      "import {",
      "  a,",
      '} from "../a/index.ts";',
      'export * from "./local.ts";',
      'import "../side/index.ts";',
      'const m = await import("../dyn/index.ts");',
      'import { Command } from "commander";',
      ' * see import("../doc/index.ts")',
    ].join("\n");
    assert.deepEqual(importsOf(text), [
      { spec: "../a/index.ts", line: 4 },
      { spec: "./local.ts", line: 5 },
      { spec: "../side/index.ts", line: 6 },
      { spec: "../dyn/index.ts", line: 7 },
    ]);
  });
});
