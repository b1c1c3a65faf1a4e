// Runs one fixed argv in a guest to its end, bounded in time and in the output it keeps:
// what the daemon's own guest chores (SSH keys, the ssh server's start) use.
import type { AgentClient, ExitStatus } from "../guest/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { withDeadline } from "../util/exec.ts";

/** Bytes of a guest command's output kept for an error message. */
export const MAX_GUEST_OUTPUT = 4096;

/**
 * Runs a fixed argv in the guest to its end within `timeoutMs` (then kills it): output is read
 * so the guest is not blocked, at most MAX_GUEST_OUTPUT bytes of stderr kept for the message.
 */
export async function runInGuest(
  agent: AgentClient,
  argv: string[],
  o: { env?: Record<string, string>; timeoutMs: number; what: string; hint?: string },
): Promise<{ status: ExitStatus; lastLine: string }> {
  const started = Date.now();
  const exec = await withDeadline(agent.exec({ argv, env: o.env, stdin: false }), o.timeoutMs, `start of ${o.what}`);
  const stderr = new BoundedText(MAX_GUEST_OUTPUT);
  exec.stderr.on("data", (b: Buffer) => stderr.add(b));
  exec.stdout.resume();
  try {
    const status = await withDeadline(exec.wait(), Math.max(1, o.timeoutMs - (Date.now() - started)), `end of ${o.what}`);
    return { status, lastLine: stderr.lastLine() };
  } catch (err) {
    exec.close();
    if (err instanceof BangerError && err.code === ErrorCode.Timeout) throw new BangerError(ErrorCode.Timeout, `${o.what} did not finish within ${o.timeoutMs} ms`, o.hint);
    throw err;
  }
}

/** Keeps the first `max` bytes of a stream's output; its last line is the message to show. */
class BoundedText {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  add(b: Buffer): void {
    if (this.size >= this.max) return;
    const part = b.subarray(0, this.max - this.size);
    this.chunks.push(part);
    this.size += part.length;
  }
  lastLine(): string {
    return Buffer.concat(this.chunks).toString("utf8").trim().split("\n").pop()?.trim() ?? "";
  }
}
