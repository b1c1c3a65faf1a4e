// Test support (not used by banger itself): the stand-in for the firecracker binary
// (test/fixtures/firecracker/fake.ts, a mock by necessity: no firecracker and no fast KVM
// here) installed as an executable, the requests it recorded, and reading a stream.
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { pathToFileURL } from "node:url";
import { REPO } from "../helpers.ts";

export const FC_SWAGGER = join(REPO, "test", "fixtures", "firecracker", "firecracker.yaml");

/** One request (or vsock handshake) the stand-in received, with what the swagger says is wrong with it. */
export interface FcRecorded {
  method?: string;
  url?: string;
  body?: Record<string, unknown>;
  headers?: Record<string, string>;
  problems?: string[];
  vsock?: string;
}

/** Writes an executable `firecracker` into dir that runs the stand-in; it validates against FC_SWAGGER. */
export async function installFakeFirecracker(dir: string): Promise<string> {
  const binary = join(dir, "firecracker");
  const loader = pathToFileURL(join(REPO, "node_modules", "tsx", "dist", "loader.mjs")).href;
  const program = join(REPO, "test", "fixtures", "firecracker", "fake.ts");
  await writeFile(binary, `#!/bin/sh\nexec "${process.execPath}" --import "${loader}" "${program}" "$@"\n`);
  await chmod(binary, 0o755);
  process.env.FC_FAKE_SWAGGER = FC_SWAGGER;
  return binary;
}

/** The requests recorded in $FC_FAKE_RECORD's file, in order. */
export async function fcRecorded(path: string): Promise<FcRecorded[]> {
  const text = await readFile(path, "utf8");
  return text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as FcRecorded);
}

/** Reads from stream until `until` has arrived (5 s at most). */
export function readSome(stream: Duplex, until: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(got)}`)), 5000);
    const onData = (b: Buffer) => {
      got += b.toString();
      if (got.includes(until)) {
        clearTimeout(timer);
        stream.removeListener("data", onData);
        resolve(got);
      }
    };
    stream.on("data", onData);
  });
}
