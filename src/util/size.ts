// Sizes as people type them: 512M, 4G, 1.5GiB, or plain bytes.
import { invalidArgument } from "./errors.ts";

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Parses "4G" / "512MiB" / "1073741824" into bytes; `defaultUnit` applies to bare numbers. */
export function parseSize(text: string, what: string, defaultUnit: "b" | "m" = "b"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? (m[2] === "" ? defaultUnit : m[2]!.toLowerCase()) : undefined;
  const factor = unit === undefined ? undefined : UNITS[unit];
  if (!m || factor === undefined) throw invalidArgument(`${what}: cannot read size ${JSON.stringify(text)}`, "use e.g. 512M, 2G or a number of bytes");
  return Math.round(Number(m[1]) * factor);
}
