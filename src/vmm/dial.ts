// Reaching a VM's agent stream: a Unix socket (QEMU's virtio-serial chardev) or Firecracker's
// hybrid vsock (a Unix socket plus a one-line CONNECT handshake). vmm owns this, not guest:
// vmm creates these sockets and knows their handshakes, while guest speaks the agent
// protocol over whatever stream it is handed. Both retry until the deadline (the guest's
// listener may not be up yet while the VM boots, firecracker#1253); a reply that is not the
// handshake's is an Integrity error at once. The handles' agentStream() use these, and so do
// tests that dial an agent they started themselves (`banger-agent serve --unix`).
import type { Socket } from "node:net";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { connectUnix, retryUntil } from "./process.ts";
import { AGENT_VSOCK_PORT } from "./types.ts";

export interface DialOptions {
  signal?: AbortSignal;
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
  /** The VMM's pid: stop waiting as soon as it exits. */
  pid?: number;
}

/** Firecracker's own answer to "host port" is round-robin from 2^30; we only check the shape. */
const OK_LINE = /^OK \d+$/;
const MAX_OK_LINE = 32;

/** Connects to a Unix socket (QEMU's agent chardev, or an agent's test server), retrying until it listens. */
export function dialUnix(path: string, opts: DialOptions = {}): Promise<Socket> {
  return retryUntil("the agent socket", () => connectUnix(path), { pid: opts.pid, timeoutMs: opts.timeoutMs ?? 10_000, signal: opts.signal });
}

/** Connects through Firecracker's vsock Unix socket to the guest's `port`, retrying until the guest listens. */
export function dialFirecrackerVsock(udsPath: string, port: number = AGENT_VSOCK_PORT, opts: DialOptions = {}): Promise<Socket> {
  return retryUntil(`the agent on vsock port ${port}`, () => vsockConnect(udsPath, port), {
    pid: opts.pid,
    timeoutMs: opts.timeoutMs ?? 10_000,
    signal: opts.signal,
  });
}

/** Hybrid vsock handshake: `CONNECT <port>\n` in one write, then `OK <hostport>\n`. */
async function vsockConnect(udsPath: string, port: number, timeoutMs = 3000): Promise<Socket> {
  const sock = await connectUnix(udsPath);
  return new Promise((resolve, reject) => {
    let line = Buffer.alloc(0);
    const fail = (err: BangerError) => {
      cleanup();
      sock.destroy();
      reject(err);
    };
    // Nothing listening in the guest yet: worth another try.
    const notYet = (why: string) => fail(new BangerError(ErrorCode.Unavailable, `vsock CONNECT ${port}: ${why}`));
    // Not Firecracker's answer: the socket is something else, and retrying cannot help.
    const wrong = (why: string) => fail(new BangerError(ErrorCode.Integrity, `vsock CONNECT ${port}: ${why}`, "is this a Firecracker vsock socket?"));
    const timer = setTimeout(() => notYet("no answer"), timeoutMs);
    // Read with 'readable' (paused mode), not 'data': once our listener is gone the socket
    // is neither flowing nor paused, so whoever takes it next gets the unshifted bytes.
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = sock.read() as Buffer | null) !== null) {
        line = Buffer.concat([line, chunk]);
        const nl = line.indexOf(0x0a);
        if (nl < 0) {
          if (line.length > MAX_OK_LINE) return wrong("reply too long");
          continue;
        }
        const answer = line.subarray(0, nl).toString("latin1");
        if (!OK_LINE.test(answer)) return wrong(`unexpected reply ${JSON.stringify(answer.slice(0, MAX_OK_LINE))}`);
        cleanup();
        // Guest bytes can ride in the same read as the OK line: hand them back to the stream.
        const rest = line.subarray(nl + 1);
        if (rest.length > 0) sock.unshift(rest);
        return resolve(sock);
      }
    };
    const onClose = () => notYet("connection closed (nothing listening in the guest yet)");
    const cleanup = () => {
      clearTimeout(timer);
      sock.removeListener("readable", onReadable);
      sock.removeListener("close", onClose);
      sock.removeListener("error", onClose);
    };
    sock.on("readable", onReadable);
    sock.once("close", onClose);
    sock.once("error", onClose);
    sock.write(`CONNECT ${port}\n`);
  });
}
