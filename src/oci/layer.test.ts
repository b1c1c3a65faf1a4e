import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { makeTempHome } from "../../test/helpers.ts";
import { sha256 } from "../../test/registry/push.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { layerCompression, openLayer } from "./layer.ts";

let tmp: { home: string; cleanup: () => void };
const TAR = Buffer.concat([Buffer.from("pretend tar bytes "), Buffer.alloc(100_000, 7)]);
let n = 0;

before(() => {
  tmp = makeTempHome();
});
after(() => tmp.cleanup());

function file(bytes: Buffer): string {
  const path = join(tmp.home, `blob-${n++}`);
  writeFileSync(path, bytes);
  return path;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const zstd = (b: Buffer) => spawnSync("zstd", ["-q", "-c"], { input: b }).stdout;

describe("openLayer", () => {
  const forms: Array<[string, Buffer, string]> = [
    ["gzip", gzipSync(TAR), "application/vnd.oci.image.layer.v1.tar+gzip"],
    ["docker gzip", gzipSync(TAR), "application/vnd.docker.image.rootfs.diff.tar.gzip"],
    ["zstd", zstd(TAR), "application/vnd.oci.image.layer.v1.tar+zstd"],
    ["uncompressed", TAR, "application/vnd.oci.image.layer.v1.tar"],
    ["sniffed gzip", gzipSync(TAR), "application/octet-stream"],
    ["sniffed zstd", zstd(TAR), "application/octet-stream"],
  ];
  for (const [what, bytes, mediaType] of forms) {
    it(`decompresses ${what} and checks the diff_id`, async () => {
      assert.deepEqual(await readAll(await openLayer({ path: file(bytes), mediaType, diffId: sha256(TAR) })), TAR);
    });
  }

  it("fails when the uncompressed bytes do not match the diff_id", async () => {
    const stream = await openLayer({ path: file(gzipSync(TAR)), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", diffId: `sha256:${"0".repeat(64)}` });
    await assert.rejects(readAll(stream), (err: unknown) => err instanceof BangerError && err.code === ErrorCode.Integrity && /image config says/.test(err.message));
  });

  it("reports corrupt zstd and gzip clearly", async () => {
    await assert.rejects(readAll(await openLayer({ path: file(Buffer.from("not zstd")), mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" })), /layer is not valid zstd/);
    await assert.rejects(readAll(await openLayer({ path: file(Buffer.from("not gzip")), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" })), /layer is not valid gzip/);
  });

  it("refuses layers that are not tars", () => {
    assert.throws(() => layerCompression("application/vnd.in-toto+json"), /unsupported layer media type/);
    assert.equal(layerCompression("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"), "gzip");
  });
});
