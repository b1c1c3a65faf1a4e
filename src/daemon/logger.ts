// Structured JSON logs, one object per line, to <root>/logs/bangerd.log (and stderr under
// --foreground, where systemd's journal picks them up). Lines are inert on a terminal (util/text.ts).
import { createWriteStream, type WriteStream } from "node:fs";
import { inertJson } from "../util/text.ts";

type Level = "debug" | "info" | "warn" | "error";

export class Logger {
  private readonly file: WriteStream;
  constructor(
    path: string,
    private readonly toStderr: boolean,
  ) {
    this.file = createWriteStream(path, { flags: "a", mode: 0o600 });
    this.file.on("error", () => undefined);
  }
  private write(level: Level, msg: string, fields?: Record<string, unknown>): void {
    // Fields may quote a guest: inertJson escapes what JSON.stringify leaves raw (C1, bidi), so `daemon logs` is safe to print.
    const line = `${inertJson({ time: new Date().toISOString(), level, msg, ...fields })}\n`;
    this.file.write(line);
    if (this.toStderr) process.stderr.write(line);
  }
  debug(msg: string, fields?: Record<string, unknown>): void {
    this.write("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.write("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.write("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.write("error", msg, fields);
  }
  close(): Promise<void> {
    return new Promise((resolve) => this.file.end(resolve));
  }
}
