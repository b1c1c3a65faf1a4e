// copyIn: a packed workspace into the guest through the agent, owned by the guest user.
import type { Readable } from "node:stream";
import type { AgentClient } from "../guest/index.ts";
import { cancelled, invalidArgument } from "../util/errors.ts";

export const DEFAULT_GUEST_WORKSPACE = "/workspace";

export interface CopyInOptions {
  /** Absolute guest directory; default /workspace. */
  dest?: string;
  /** Owner of every copied entry (the guest user); default the archive's (root). */
  uid?: number;
  gid?: number;
  signal?: AbortSignal;
}

/** Streams the tar into the guest; resolves with what the agent extracted. */
export async function copyIn(agent: AgentClient, tar: Readable, opts: CopyInOptions = {}): Promise<{ files: number; bytes: number }> {
  if (opts.signal?.aborted) {
    tar.destroy();
    throw cancelled();
  }
  const dest = opts.dest ?? DEFAULT_GUEST_WORKSPACE;
  if (!dest.startsWith("/")) throw invalidArgument(`guest workspace ${JSON.stringify(dest)} must be an absolute path`);
  for (const id of [opts.uid, opts.gid]) {
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)) throw invalidArgument(`bad guest owner id ${id}`);
  }
  return agent.putFiles(dest, tar, { uid: opts.uid, gid: opts.gid, signal: opts.signal });
}
