// The one rule that makes untrusted text inert on a terminal. Text from a guest (port
// listings, session names and argv, agent errors, the console tail in a boot error), an image
// (OCI labels, entrypoint, env), a catalog (descriptions) or a registry can carry escape
// sequences: cursor moves that hide lines, OSC 52 clipboard writes, title changes, C1 CSI
// (0x9b), bidi overrides that reorder what the user reads. Whatever the CLI or daemon prints
// from such a source goes through inert() (or inertJson() for --json), which escapes:
// C0 controls (only "\n" kept, and only when asked), DEL, C1 U+0080-U+009F, bidi controls
// (U+061C, U+200E/F, U+202A-202E, U+2066-2069), line/paragraph separators, lone surrogates
// (what invalid UTF-8 decodes to is already U+FFFD) and the backslash itself, so an escape is
// never ambiguous. Long text is cut with an ellipsis.
//
// Raw streams stay raw by design: `vm exec` and `session attach/logs` output, `vm logs` and
// file transfers are the guest's bytes the user asked for, like `cat` of a file.

/** Characters a terminal may act on, or that reorder or break what is shown. */
// With the u flag a surrogate range matches only lone surrogates (a pair is one code point).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\\]/gu;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e", "\\": "\\\\" };

export const DEFAULT_INERT_MAX = 256;

export interface InertOptions {
  /** Longest result in characters (code points), ellipsis included. Default 256. */
  max?: number;
  /** Keep "\n" as a line break (multi-line text such as a console tail in an error hint). */
  newlines?: boolean;
}

function escapeChar(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/** Untrusted text made safe to print on a terminal: controls escaped, length bounded. */
export function inert(text: unknown, opts: InertOptions = {}): string {
  const s = typeof text === "string" ? text : String(text);
  const max = Math.max(1, opts.max ?? DEFAULT_INERT_MAX);
  const escaped = s.replace(UNSAFE, (c) => (c === "\n" && opts.newlines ? c : escapeChar(c)));
  return truncate(escaped, max);
}

/** Cuts at `max` code points (never inside an escape's surrogate pair), ending with "…". */
function truncate(s: string, max: number): string {
  if (s.length <= max) return s; // UTF-16 length >= code points: nothing to cut
  const points = Array.from(s);
  return points.length <= max ? s : `${points.slice(0, max - 1).join("")}…`;
}

/** Escapes JSON.stringify leaves raw (DEL, C1, bidi, separators) as \u escapes: the same JSON value, inert on a terminal. */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text of a value that is safe to print on a terminal and parses back to the same value. */
export function inertJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
