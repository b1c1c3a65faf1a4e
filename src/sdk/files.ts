// Files in a VM from a program: one file written as a one-member tar through `vm.files.put`,
// a file or directory read back as the tar `vm.files.get` streams (rooted at the path's base
// name, agent/PROTOCOL.md). What comes back is the guest's: bounded, never written to disk.
import { posix } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { type Client, outBytes } from "../api/index.ts";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { packEntry } from "../util/tarpack.ts";
import { Uploader } from "./uploader.ts";

/** tar-stream, loaded at the first file call: the CLI imports this folder and starts without it. */
const tarStream = async () => (await import("tar-stream")).default;

export interface WriteFileOptions {
  /** Permission bits (default 0o644). */
  mode?: number;
  /** Owner in the guest (Vm.writeFile: the user commands run as; uid 0 is root). */
  uid?: number;
  gid?: number;
}

/** The head of a file: up to the bytes asked for, and the file's whole size. */
export interface FileHead {
  data: Buffer;
  size: number;
}

function absolute(path: string): string {
  if (!posix.isAbsolute(path)) throw invalidArgument(`${JSON.stringify(path)} is not an absolute path`, "name guest files from / (e.g. /tmp/notes.txt)");
  const clean = posix.normalize(path);
  if (clean === "/") throw invalidArgument("/ is not a file", "name a file, e.g. /tmp/notes.txt");
  return clean.replace(/\/+$/, "");
}

/** The guest's `path` (a file or a directory) as a tar stream, rooted at its base name. It errors as soon as the call fails: listen for that before awaiting anything. */
export function guestTar(client: Client, name: string, path: string, signal?: AbortSignal): Readable {
  const out = new PassThrough();
  const call = client.start("vm.files.get", { name, path }, { signal, onEvent: (e) => void (outBytes(e) && out.write(outBytes(e)!.data)) });
  call.result.then(
    () => out.end(),
    (err: unknown) => out.destroy(err as Error),
  );
  return out;
}

/** Writes `data` to the guest file `path`, creating its directory; replaces a file there. */
export async function writeGuestFile(client: Client, name: string, path: string, data: string | Uint8Array, opts: WriteFileOptions = {}): Promise<{ bytes: number }> {
  const file = absolute(path);
  const body = Buffer.from(data);
  const pack = (await tarStream()).pack();
  const call = client.start("vm.files.put", { name, dest: posix.dirname(file), uid: opts.uid, gid: opts.gid }, { onEvent: (e) => void (isAck(e) && uploader.ack(e.n)) });
  const uploader = new Uploader(call, pack as unknown as AsyncIterable<Buffer>); // a streamx stream: async-iterable
  uploader.start();
  try {
    await packEntry(pack, { name: posix.basename(file), type: "file", size: body.length, mode: opts.mode ?? 0o644, mtime: new Date() }, body);
    pack.finalize();
    await call.result;
    return { bytes: body.length };
  } finally {
    uploader.stop();
    pack.destroy();
  }
}

function isAck(e: unknown): e is { t: "ack"; n: number } {
  return typeof e === "object" && e !== null && (e as { t?: unknown }).t === "ack" && typeof (e as { n?: unknown }).n === "number";
}

/**
 * The first `maxBytes` of the guest file `path` and its size (from the tar header: a larger
 * file is not read further, the call is cancelled). A directory or other non-file fails.
 */
export async function readGuestFileHead(client: Client, name: string, path: string, maxBytes: number): Promise<FileHead> {
  const file = absolute(path);
  const stop = new AbortController();
  // The extractor first: the call may fail (no such file) while tar-stream is still loading,
  // and its error must find the listener below, not end the process as an uncaught one.
  const extract = (await tarStream()).extract();
  const source = guestTar(client, name, file, stop.signal);
  let found: FileHead | undefined;
  let error: unknown;
  try {
    await new Promise<void>((resolve, reject) => {
      source.on("error", reject);
      extract.on("error", reject);
      extract.on("finish", resolve);
      extract.on("entry", (header, stream, next) => {
        if (found || error) return (stream.resume(), next());
        if (header.type !== "file") {
          error = new BangerError(ErrorCode.InvalidArgument, `${file} is not a regular file (${header.type})`, header.type === "directory" ? "list it with exec: ls -la" : undefined);
        } else {
          const head: Buffer[] = [];
          let have = 0;
          stream.on("data", (chunk: unknown) => {
            if (!Buffer.isBuffer(chunk)) return;
            if (have < maxBytes) head.push(chunk.subarray(0, maxBytes - have));
            have += chunk.length;
            if (have >= maxBytes && (header.size ?? 0) > maxBytes) {
              found = { data: Buffer.concat(head), size: header.size ?? have };
              stop.abort(); // the rest is not wanted
              resolve();
            }
          });
          stream.on("end", () => {
            found ??= { data: Buffer.concat(head), size: header.size ?? have };
            next();
          });
          return;
        }
        stream.resume();
        next();
      });
      source.pipe(extract);
    });
  } catch (err) {
    if (!found) throw err;
  } finally {
    source.unpipe(extract);
    extract.destroy();
    source.destroy();
  }
  if (error) throw error;
  if (!found) throw new BangerError(ErrorCode.NotFound, `${file} not found in the VM`);
  return found;
}

/** The whole guest file; fails when it is larger than `maxBytes` (default 64 MiB). */
export async function readGuestFile(client: Client, name: string, path: string, maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
  const head = await readGuestFileHead(client, name, path, maxBytes);
  if (head.size > maxBytes) {
    throw new BangerError(ErrorCode.ResourceExhausted, `${path} is ${head.size} bytes, more than maxBytes (${maxBytes})`, "raise maxBytes, or read its head with readFileHead");
  }
  return head.data;
}
