// Adding members to a tar-stream pack without ever ending the process. An entry is a stream
// of its own (tar-stream's Sink): when the pack is destroyed while an entry is in flight (its
// reader failed: a full disk, a cancelled call, a refused member), that entry emits 'error',
// and an 'error' nobody listens to is thrown: the daemon exits. Every entry made here has a
// listener; the failure still reaches the caller through the returned promise and the pack.
import type tar from "tar-stream";

export type PackHeader = Parameters<tar.Pack["entry"]>[0];

/** Adds one member (with `body` for a file held in memory); resolves when it is written. */
export function packEntry(pack: tar.Pack, header: PackHeader, body?: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    const sink = body === undefined ? pack.entry(header, done) : pack.entry(header, body, done);
    sink.on("error", () => undefined); // reported through `done`
  });
}

/**
 * Queues a member without waiting for it (the pack is read only after every member is
 * queued): a failure is the pack's, and its reader sees it there.
 */
export function queueEntry(pack: tar.Pack, header: PackHeader, body?: Buffer | string): void {
  packEntry(pack, header, body).catch(() => undefined);
}
