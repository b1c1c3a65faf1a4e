// Progress of long operations, reported by modules and carried to the CLI as RPC notifications.

export interface ProgressEvent {
  /** A short phase name: "download", "extract", "disk", "boot", "agent". */
  phase: string;
  /** Bytes or items done and expected, when countable. */
  done?: number;
  total?: number;
  message?: string;
}

export type Progress = (event: ProgressEvent) => void;

export const noProgress: Progress = () => undefined;
