// Progress of long operations, reported by modules and carried to the CLI as RPC notifications.

export interface ProgressEvent {
  /** A short phase name: "download", "extract", "disk", "boot", "agent". */
  phase: string;
  /** Bytes (or `unit`s) done and expected, when countable. */
  done?: number;
  total?: number;
  /** What done/total count when not bytes, plural: "packages". */
  unit?: string;
  message?: string;
}

export type Progress = (event: ProgressEvent) => void;

export const noProgress: Progress = () => undefined;
