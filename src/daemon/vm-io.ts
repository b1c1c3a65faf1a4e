// A VM's byte streams beyond exec: its serial console log (tail, and follow while it grows)
// and files copied in and out through the guest agent as tar streams.
import type { StreamEvent } from "../api/index.ts";
import type { AgentClient } from "../guest/index.ts";
import type { CallContext } from "../rpc/index.ts";
import { CONSOLE_LOG_CAP, readConsoleFrom, readConsoleTail } from "../vmm/index.ts";
import type { DaemonContext } from "./context.ts";
import { emitStream, inputStream } from "./streams.ts";
import { consoleLog } from "./vms.ts";

/** What `vm logs` sends without `bytes`: the most the console keeps (two caps). */
export const CONSOLE_DEFAULT_TAIL = 2 * CONSOLE_LOG_CAP;
export const CONSOLE_MAX_TAIL = 16 * 1024 * 1024;
const CONSOLE_CHUNK = 64 * 1024;

/**
 * Sends the console log's last `tailBytes` as events (never the whole file: see vmm/console.ts);
 * with follow, keeps sending what is appended until cancelled or the VM is removed.
 */
export async function streamConsole(ctx: DaemonContext, name: string, opts: { follow: boolean; tailBytes: number }, call: CallContext): Promise<{ bytes: number }> {
  const path = consoleLog(ctx, name);
  let sent = 0;
  const send = async (data: Buffer) => {
    for (let at = 0; at < data.length; at += CONSOLE_CHUNK) {
      await call.emit({ t: "out", fd: 1, data: data.subarray(at, at + CONSOLE_CHUNK) } satisfies StreamEvent);
    }
    sent += data.length;
  };
  const tail = await readConsoleTail(path, opts.tailBytes);
  await send(tail.data);
  let offset = tail.offset;
  while (opts.follow && !call.signal.aborted) {
    await new Promise((r) => setTimeout(r, 250));
    if (!ctx.store.getVm(name)) break;
    for (;;) {
      const next = await readConsoleFrom(path, offset, CONSOLE_CHUNK);
      offset = next.offset;
      if (next.data.length === 0 || call.signal.aborted) break;
      await send(next.data);
    }
  }
  return { bytes: sent };
}

/** Unpacks the call's input (a tar) under `dest` in the guest, owned by uid/gid when given. */
export function putFiles(agent: AgentClient, dest: string, owner: { uid?: number; gid?: number }, call: CallContext): Promise<{ files: number; bytes: number }> {
  return agent.putFiles(dest, inputStream(call), { ...owner, signal: call.signal });
}

/** Sends a tar of the guest's `path` as `out` events. */
export async function getFiles(agent: AgentClient, path: string, call: CallContext): Promise<{ done: true }> {
  await emitStream(await agent.getFiles(path), call);
  return { done: true };
}
