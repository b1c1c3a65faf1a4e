// Which Debian mirror debootstrap should use: the one this host's apt already uses for the
// target suite (so a host behind a local mirror or proxy keeps working), else deb.debian.org.
// Reads /etc/apt/sources.list and sources.list.d/*.list|*.sources (one-line and deb822 forms).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_DEBIAN_MIRROR } from "./debian-files.ts";

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  enabled: boolean;
}

/** Parses one-line `deb [opts] URI SUITE COMPONENT...` entries; comments and junk are skipped. */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw
      .replace(/#.*/, "")
      .replace(/\[[^\]]*\]/, " ")
      .trim();
    const [type, uri, suite, ...components] = line.split(/\s+/);
    if (!type || !uri || !suite || (type !== "deb" && type !== "deb-src")) continue;
    out.push({ types: [type], uris: [uri], suites: [suite], components, enabled: true });
  }
  return out;
}

/** Parses deb822 `.sources` stanzas (blank-line separated `Field: value` blocks). */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const raw of stanza.split("\n")) {
      if (raw.startsWith("#")) continue;
      if (/^\s/.test(raw) && last) {
        fields.set(last, `${fields.get(last)} ${raw.trim()}`); // continuation line
        continue;
      }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    const list = (k: string) => (fields.get(k) ?? "").split(/\s+/).filter(Boolean);
    if (list("types").length === 0 || list("uris").length === 0) continue;
    out.push({
      types: list("types"),
      uris: list("uris"),
      suites: list("suites"),
      components: list("components"),
      enabled: !/^(no|false|0)$/i.test(fields.get("enabled") ?? "yes"),
    });
  }
  return out;
}

/** The first enabled binary source for `suite` with an http(s) URI, without its trailing slash. */
export function pickMirror(sources: readonly AptSource[], suite: string): string | undefined {
  for (const s of sources) {
    if (!s.enabled || !s.types.includes("deb") || !s.suites.includes(suite)) continue;
    const uri = s.uris.find((u) => /^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(u));
    if (uri) return uri.replace(/\/+$/, "");
  }
  return undefined;
}

/** The host's apt mirror for `suite`, or deb.debian.org when none is configured or readable. */
export async function detectMirror(suite: string, aptDir = "/etc/apt"): Promise<string> {
  const sources: AptSource[] = [];
  const text = (p: string) => readFile(p, "utf8").catch(() => "");
  sources.push(...parseOneLineSources(await text(join(aptDir, "sources.list"))));
  const dir = join(aptDir, "sources.list.d");
  const names = (await readdir(dir).catch(() => [] as string[])).sort();
  for (const name of names) {
    // Only the two suffixes apt itself reads: `foo.list.disabled` and the like are ignored.
    if (name.endsWith(".list")) sources.push(...parseOneLineSources(await text(join(dir, name))));
    else if (name.endsWith(".sources")) sources.push(...parseDeb822Sources(await text(join(dir, name))));
  }
  return pickMirror(sources, suite) ?? DEFAULT_DEBIAN_MIRROR;
}
