// Getting a connected byte stream to the agent: Firecracker's hybrid vsock (a Unix
// socket plus a one-line CONNECT handshake) or a plain Unix socket (QEMU's virtio-serial
// chardev, or `banger-agent serve --unix` in tests). Both retry until the deadline: the
// guest listener may not be up yet while the VM boots.
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";

export interface DialOptions {
  signal?: AbortSignal;
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
}

/** The vsock port the agent listens on (kernel cmdline `banger.vsock_port=` changes it). */
export const AGENT_VSOCK_PORT = 52;
/** The virtio-serial port name the agent looks for (`-device virtserialport,name=...`). */
export const AGENT_SERIAL_NAME = "banger.agent";

const MAX_REPLY_LINE = 64;

/** Connects through Firecracker's vsock Unix socket to the guest's port. */
export async function dialFirecrackerVsock(udsPath: string, port: number = AGENT_VSOCK_PORT, opts: DialOptions = {}): Promise<Socket> {
  return retryUntil(`vsock port ${port} via ${udsPath}`, opts, async () => {
    const sock = await connectUnix(udsPath);
    try {
      // One write: Firecracker reads the CONNECT line from the first packet.
      sock.write(`CONNECT ${port}\n`);
      const rest = await readLine(sock, (line) => /^OK \d+$/.test(line), `vsock port ${port}`);
      if (rest.length > 0) sock.unshift(rest);
      return sock;
    } catch (err) {
      sock.destroy();
      throw err;
    }
  });
}

/** Connects to a Unix socket (QEMU virtio-serial chardev, or the agent's test server). */
export async function dialUnix(path: string, opts: DialOptions = {}): Promise<Socket> {
  return retryUntil(path, opts, () => connectUnix(path));
}

function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ path });
    sock.once("connect", () => {
      sock.off("error", reject);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}

/**
 * Reads one line (bounded) and returns the bytes after it. A refused or closed connection
 * is retryable (no listener in the guest yet); a wrong reply is not.
 */
function readLine(sock: Socket, ok: (line: string) => boolean, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: Error, rest?: Buffer) => {
      sock.off("data", onData);
      sock.off("close", onClose);
      sock.off("error", onError);
      sock.pause();
      if (err) reject(err);
      else resolve(rest!);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > MAX_REPLY_LINE) done(notRetryable(`${what}: reply line too long`));
        return;
      }
      const line = buf.subarray(0, nl).toString("latin1");
      if (!ok(line)) return done(notRetryable(`${what}: unexpected reply ${JSON.stringify(line.slice(0, MAX_REPLY_LINE))}`));
      done(undefined, buf.subarray(nl + 1));
    };
    const onClose = () => done(new Error("closed before answering"));
    const onError = (err: Error) => done(err);
    sock.on("data", onData);
    sock.once("close", onClose);
    sock.once("error", onError);
  });
}

class NotRetryable extends Error {}
const notRetryable = (msg: string) => new NotRetryable(msg);

/** Calls attempt() with backoff until it succeeds, the deadline passes or the signal fires. */
async function retryUntil<T>(what: string, opts: DialOptions, attempt: () => Promise<T>): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  let last: unknown;
  for (;;) {
    if (opts.signal?.aborted) throw cancelled();
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof NotRetryable) {
        throw new BangerError(ErrorCode.Integrity, `guest agent dial failed: ${err.message}`, "is this a Firecracker vsock socket?");
      }
      last = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new BangerError(
        ErrorCode.Timeout,
        `guest agent not reachable on ${what} within ${timeoutMs} ms (${(last as Error)?.message ?? "no answer"})`,
        "the guest may still be booting or lack the agent; check the VM console log: banger vm logs",
      );
    }
    await sleep(Math.min(delay, left), undefined, { signal: opts.signal }).catch(() => undefined);
    delay = Math.min(delay * 2, 500);
  }
}
