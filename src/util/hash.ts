// Hashing a file: the one helper behind bundle packing, kernel and image manifests and
// catalog pulls, so they agree on the digest's spelling (lowercase hex) and read alike.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/** sha256 (lowercase hex) and size of a file, read in 1 MiB chunks. */
export async function sha256File(path: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), sizeBytes };
}
