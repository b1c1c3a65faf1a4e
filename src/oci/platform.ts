// Platforms ("linux/arm64/v8") and picking one manifest out of an OCI index or Docker
// manifest list, with the same defaults Docker uses (arm64 means v8, arm means v7).
import { normalizeArch } from "../util/arch.ts";
import { invalidArgument } from "../util/errors.ts";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const PART_RE = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

/** Parses "os/arch[/variant]" (e.g. "linux/arm64/v8"). */
export function parsePlatform(text: string): Platform {
  const parts = text.toLowerCase().split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !PART_RE.test(p))) {
    throw invalidArgument(`invalid platform ${JSON.stringify(text)}`, "use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8");
  }
  const [os, arch, variant] = parts as [string, string, string?];
  return { os, architecture: normalizeArch(arch), ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** The platform of this host (Linux guests only). */
export function hostPlatform(arch: string = process.arch): Platform {
  if (arch === "x64") return { os: "linux", architecture: "amd64" };
  if (arch === "arm64") return { os: "linux", architecture: "arm64", variant: "v8" };
  if (arch === "arm") return { os: "linux", architecture: "arm", variant: "v7" };
  return { os: "linux", architecture: arch };
}

function normalVariant(architecture: string, variant: string | undefined): string | undefined {
  if (architecture === "arm64") return variant === undefined || variant === "v8" ? "v8" : variant;
  if (architecture === "arm") return variant ?? "v7";
  return variant;
}

/** True when `have` satisfies `want` (a missing wanted variant matches any, Docker style). */
export function platformMatches(want: Platform, have: Platform, strictVariant: boolean): boolean {
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  if (!strictVariant && want.variant === undefined) return true;
  return normalVariant(want.architecture, want.variant) === normalVariant(have.architecture, have.variant);
}

/** Picks the best entry: exact variant first, then any variant of the same os/arch. */
export function selectPlatform<T extends { platform?: Platform }>(entries: readonly T[], want: Platform): T | undefined {
  return entries.find((e) => e.platform && platformMatches(want, e.platform, true)) ?? entries.find((e) => e.platform && platformMatches(want, e.platform, false));
}
