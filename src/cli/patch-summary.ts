// What an exported workspace patch changes, per file, for a `git diff --stat`-like summary
// (`vm run` says what a kept or removed VM holds). Read from the patch text alone, without
// git: the patch comes from a guest, so this only counts, and whatever it prints goes
// through inert().
export interface FileChange {
  path: string;
  added: number;
  removed: number;
  binary: boolean;
}

export interface PatchSummary {
  files: FileChange[];
  added: number;
  removed: number;
}

/** Per-file line counts of a `git format-patch` mbox (one or more patches; a file in several is counted once). */
export function summarizePatch(patch: Buffer | string): PatchSummary {
  const files = new Map<string, FileChange>();
  let current: FileChange | undefined;
  let inDiff = false;
  for (const line of patch.toString("utf8").split("\n")) {
    if (line.startsWith("From ") && / Mon Sep 17 00:00:00 2001$/.test(line)) {
      // The next patch of the series: its message comes before its diff.
      inDiff = false;
      current = undefined;
    } else if (line.startsWith("diff --git ")) {
      inDiff = true;
      const path = diffPath(line.slice("diff --git ".length));
      current = files.get(path) ?? { path, added: 0, removed: 0, binary: false };
      files.set(path, current);
    } else if (!inDiff || !current) {
      // A commit message (it may hold lines like a diff's): nothing to count.
    } else if (line === "GIT binary patch" || line.startsWith("Binary files ")) {
      current.binary = true;
    } else if (line.startsWith("+") && !line.startsWith("+++ ")) {
      current.added++;
    } else if (line.startsWith("-") && !line.startsWith("--- ")) {
      current.removed++;
    }
  }
  const list = [...files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files: list, added: list.reduce((n, f) => n + f.added, 0), removed: list.reduce((n, f) => n + f.removed, 0) };
}

/**
 * The path of `a/P b/P` (renames are off in exports, so both sides name the same file), or of
 * `"a/P" "b/P"` when git quoted it (unusual characters, C escapes).
 */
function diffPath(rest: string): string {
  if (rest.startsWith('"')) return unquote(rest).replace(/^a\//, "");
  // "a/" + P + " b/" + P: P is half of what is left.
  const len = (rest.length - 5) / 2;
  return Number.isInteger(len) && len > 0 ? rest.slice(2, 2 + len) : rest.replace(/^a\//, "");
}

/** The first C-quoted string of `s` (git's quoting of unusual paths), octal escapes as UTF-8 bytes. */
function unquote(s: string): string {
  const bytes: number[] = [];
  const simple: Record<string, number> = { n: 10, t: 9, r: 13, a: 7, b: 8, f: 12, v: 11, '"': 34, "\\": 92 };
  for (let i = 1; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') break;
    if (c !== "\\") {
      bytes.push(...Buffer.from(c, "utf8"));
      continue;
    }
    const next = s[++i] ?? "";
    if (/[0-7]/.test(next)) {
      bytes.push(parseInt(s.slice(i, i + 3), 8) & 0xff);
      i += 2;
    } else {
      bytes.push(simple[next] ?? next.charCodeAt(0));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** `3 files changed, +10 -2` (or `1 file changed, ...`). */
export function changeLine(s: PatchSummary): string {
  return `${s.files.length} file${s.files.length === 1 ? "" : "s"} changed, +${s.added} -${s.removed}`;
}

/** `path | +N -M` lines (at most `max`, then how many more), paths padded to the widest. */
export function statLines(s: PatchSummary, max = 20): string[] {
  const shown = s.files.slice(0, max);
  const width = Math.max(0, ...shown.map((f) => f.path.length));
  const lines = shown.map((f) => `${f.path.padEnd(width)} | ${f.binary ? "binary" : `+${f.added} -${f.removed}`}`);
  if (s.files.length > max) lines.push(`... and ${s.files.length - max} more`);
  return lines;
}
