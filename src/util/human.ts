// How people read numbers: sizes and durations, one format for the CLI, the daemon's
// messages and the dashboard. No imports: the dashboard's browser bundle uses it too.

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 512 B, 1.5 KiB, 23 MiB, 4.0 GiB: binary units, one decimal below 10. */
export function humanBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${BYTE_UNITS[i]}`;
}

/** 42s, 3m 5s, 2h 10m, 4d 3h: the two largest units. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
