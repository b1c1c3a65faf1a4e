// The layout rules of CONTRIBUTING.md, checked over a source tree (test/boundaries.test.ts runs
// this on src/ and on small fixture trees). Folders are the first path segment under the root
// (src/webui/app is part of webui). Rules, for every non-test .ts file:
//   client: cli/, webui/, e2b/, mcp/ and sdk/ import only the client-side folders of CLIENT_SIDE
//           (never daemon/, store/ or guest/: they speak api/ and rpc/ to bangerd);
//   index:  an import into another folder names that folder's index.ts (util/ has no index:
//           its files are imported one by one);
//   cycle:  no cycle in the graph of folders (type-only imports count: they couple too);
//   size:   a file over 400 lines says why in its first 10 lines ("over 400 lines: ...").
// Import specifiers are read with regular expressions (static import/export ... from, side-
// effect imports, dynamic import()), skipping comment lines: enough for this codebase's style.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

export const MAX_LINES = 400;
/** Folders imported file by file: they have no index.ts on purpose. */
export const NO_INDEX = new Set(["util"]);
const CLIENTS = new Set(["cli", "webui", "e2b", "mcp", "sdk"]);
/** What cli/ and webui/ may import; everything else is the daemon's side. Why each is client-side: */
export const CLIENT_SIDE = new Set([
  "api", // the wire contract: method map, views, stream events
  "rpc", // the transport to bangerd
  "launch", // starting bangerd from the CLI (the client's job)
  "util", // errors, text output, names, human units: no side of their own
  "config", // paths and config.toml: read by the CLI (`banger config`, where the socket is)
  "workspace", // `vm workspace` packs and applies patches with the host's git, in the user's checkout
  "doctor", // `banger doctor` runs locally, before any daemon exists
  "net", // `banger config` checks network values offline; `net ssh-config` writes the ssh key and include
  "kernel", // `kernel import` reads the user's kernel files to upload them
  "rootfs", // `banger internal` makes bundles on the build host (no daemon)
  "mcp", // `banger mcp` runs the MCP server (a client of bangerd itself, built on sdk/)
  "sdk", // the TypeScript SDK: a client itself; the CLI shares its uploader and workspace export, mcp/ is built on it
]);

export interface Violation {
  rule: "client" | "index" | "cycle" | "size";
  /** "src/cli/run.ts:12 -> src/daemon/launch.ts", or the cycle's path. */
  message: string;
}

/** One import between two folders: the folders, and where it is ("src/a/x.ts:3 -> src/b/index.ts"). */
interface Edge {
  from: string;
  to: string;
  where: string;
}

export function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".d.ts")) out.push(path);
    }
  };
  walk(root);
  return out;
}

const PATTERNS = [/(?:^|[\s;{}])(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/g, /(?:^|[\s;{}])import\s*["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g];

/** The relative specifiers a file imports, with their 1-based line. */
export function importsOf(text: string): { spec: string; line: number }[] {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") lineStarts.push(i + 1);
  const lineOf = (index: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const found = new Map<string, { spec: string; line: number }>();
  for (const re of PATTERNS) {
    for (const m of text.matchAll(re)) {
      const specAt = m.index! + m[0].lastIndexOf(m[1]!);
      const line = lineOf(specAt);
      const lineText = text.slice(lineStarts[line], lineStarts[line + 1] ?? text.length).trimStart();
      if (lineText.startsWith("//") || lineText.startsWith("*") || lineText.startsWith("/*")) continue;
      if (!m[1]!.startsWith(".")) continue;
      found.set(`${line}:${m[1]}`, { spec: m[1]!, line: line + 1 });
    }
  }
  return [...found.values()].sort((a, b) => a.line - b.line);
}

/** The folder of a path under root ("cli" for root/cli/run.ts), or undefined outside it. */
function folderOf(root: string, path: string): string | undefined {
  const rel = relative(root, path);
  if (rel.startsWith("..") || !rel.includes(sep)) return undefined;
  return rel.split(sep)[0];
}

export function checkTree(root: string, label = "src"): Violation[] {
  root = resolve(root);
  const show = (path: string) => join(label, relative(root, path));
  const violations: Violation[] = [];
  const edges: Edge[] = [];
  for (const file of sourceFiles(root)) {
    const text = readFileSync(file, "utf8");
    const lines = text.split("\n");
    if (lines.length > MAX_LINES && !/over 400 lines/i.test(lines.slice(0, 10).join("\n"))) {
      violations.push({ rule: "size", message: `${show(file)}: ${lines.length} lines; split it by job, or say "over 400 lines: <why>" in its first 10 lines` });
    }
    const from = folderOf(root, file);
    if (!from) continue;
    for (const { spec, line } of importsOf(text)) {
      const target = resolve(dirname(file), spec);
      const to = folderOf(root, target);
      if (!to || to === from) continue;
      const where = `${show(file)}:${line} -> ${show(target)}`;
      edges.push({ from, to, where });
      if (CLIENTS.has(from) && !CLIENT_SIDE.has(to)) {
        violations.push({ rule: "client", message: `${where}: ${from}/ may not import ${to}/ (client-side folders only: use api/ for types, rpc/ to call)` });
      }
      if (!NO_INDEX.has(to) && relative(join(root, to), target) !== "index.ts") {
        violations.push({ rule: "index", message: `${where}: import ${to}/index.ts, not a file inside ${to}/${existsSync(join(root, to, "index.ts")) ? "" : ` (${to}/ has no index.ts: add one)`}` });
      }
    }
  }
  violations.push(...cycles(edges));
  return violations;
}

/** One violation per strongly connected set of folders, showing a cycle and an import for each step. */
function cycles(edges: Edge[]): Violation[] {
  const graph = new Map<string, Map<string, string>>(); // folder -> next folder -> one import that makes the edge
  for (const e of edges) {
    if (!graph.has(e.from)) graph.set(e.from, new Map());
    if (!graph.get(e.from)!.has(e.to)) graph.get(e.from)!.set(e.to, e.where);
  }
  // Tarjan's strongly connected components.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const sccs: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) sccs.push(scc);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return sccs.map((scc) => {
    const members = new Set(scc);
    const start = [...scc].sort()[0]!;
    // A shortest way back to start inside the component: breadth-first from start.
    const prev = new Map<string, string>();
    const queue = [start];
    let closing: string | undefined;
    while (queue.length > 0 && closing === undefined) {
      const v = queue.shift()!;
      for (const w of [...(graph.get(v)?.keys() ?? [])].sort()) {
        if (!members.has(w)) continue;
        if (w === start) {
          closing = v;
          break;
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const path = [closing!];
    while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
    path.push(start);
    const steps = path.slice(1).map((to, i) => `  ${graph.get(path[i]!)!.get(to)}`);
    return { rule: "cycle" as const, message: `folder cycle ${path.join(" -> ")}:\n${steps.join("\n")}` };
  });
}
