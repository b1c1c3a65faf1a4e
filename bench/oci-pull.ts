// Issue 5's numbers: `banger image pull` of a ~300 MiB multi-layer image from Debian's
// docker-registry on loopback into a ready ext4 (a fresh BANGER_HOME each run, so the blob
// cache is cold; the kernel import before it is not timed), against the baseline in the same
// run: `skopeo copy docker://… oci:DIR:1` + `umoci unpack --rootless` + `mkfs.ext4 -d` on an
// image file of the size banger chose. Runs alternate; medians. Then the same pull again in
// the same home (the cached "up to date" no-op).
// Targets: ratio banger/baseline <= 1.0; second pull under 1 s.
//
// The image (made here, pushed with test/registry's helper): 5 gzip layers of ~60 MiB each,
// 48 files of 1 MiB (a third random, the rest text-like) and 3000 small files (1–7 KiB) per
// layer, busybox-static in the first: 300 MiB and 15000 files unpacked.
//
// Run: node --import tsx bench/oci-pull.ts       (BENCH_RUNS=5; about 2 minutes)
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { testKernelDeb } from "../test/helpers.ts";
import { startRegistry } from "../test/registry/harness.ts";
import { pushTestImage } from "../test/registry/images.ts";
import { sha256 } from "../test/registry/push.ts";
import { MiB, benchHome, fmt, median, onCleanup, runBench, runChecked, timed } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const LAYERS = 5;
const BIG_FILES = 48;
const SMALL_FILES = 3000;
const KERNEL = "debian-6.1-cloud";

await runBench(async () => {
  const registry = await startRegistry();
  onCleanup(() => registry.stop());
  const ref = `${registry.host}/bench:1`;
  const built = await timed(async () => {
    const layers = [];
    for (let i = 0; i < LAYERS; i++) layers.push(await makeLayer(i));
    const pushed = await pushTestImage({ url: registry.url }, "bench", "1", "amd64", "oci", layers);
    const compressed = pushed.layers.reduce((n, l) => n + l.size, 0);
    console.log(`image ${ref}: ${LAYERS} gzip layers, ${(compressed / MiB).toFixed(0)} MiB compressed, ${LAYERS * (BIG_FILES + SMALL_FILES)} files`);
  });
  console.log(`(made and pushed in ${(built / 1000).toFixed(1)} s)`);
  const deb = await testKernelDeb();
  const work = mkdtempSync(join(tmpdir(), "bgr-bench-oci-")); // beside the state roots: the same disk
  onCleanup(() => rmSync(work, { recursive: true, force: true }));

  const ours: number[] = [];
  const again: number[] = [];
  const base: number[] = [];
  let sizeBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const h = await benchHome();
    await h.banger(["kernel", "import", "--debian", "--deb", deb]); // starts the daemon too
    execFileSync("sync");
    const first = process.hrtime.bigint();
    const pulled = await h.banger(["image", "pull", ref, "--name", "benchimg", "--kernel-ref", KERNEL]);
    ours.push(Number(process.hrtime.bigint() - first) / 1e6);
    const second = process.hrtime.bigint();
    const r = await h.banger(["image", "pull", ref, "--name", "benchimg", "--kernel-ref", KERNEL]);
    again.push(Number(process.hrtime.bigint() - second) / 1e6);
    if (!/up to date/.test(r.stdout)) throw new Error(`second pull was not a no-op: ${r.stdout}`);
    sizeBytes = statSync(join(h.home, "images", "benchimg", "rootfs.ext4")).size;

    execFileSync("sync");
    const b = await baseline(ref, join(work, `run${i}`), sizeBytes);
    base.push(b.total);
    console.log(`run ${i + 1}: banger image pull ${fmt(ours[i]!)} (again, cached: ${fmt(again[i]!)})   skopeo+umoci+mkfs ${fmt(b.total)}`);
    console.log(`       banger phases: ${phases(pulled.stderr)}`);
    console.log(
      `       baseline steps: ${Object.entries(b.steps)
        .map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)}s`)
        .join(", ")}`,
    );
  }
  const ratio = median(ours) / median(base);
  console.log(`rootfs.ext4: ${(sizeBytes / MiB).toFixed(0)} MiB (banger's sizing; the baseline's image file gets the same size)`);
  console.log(`median: banger ${fmt(median(ours))}, skopeo copy + umoci unpack + mkfs.ext4 -d ${fmt(median(base))}, ratio ${ratio.toFixed(2)} (target <= 1.0) -> ${ratio <= 1 ? "met" : "NOT met"}`);
  const hit = median(again);
  console.log(`second pull (cache hit, "up to date"): median ${fmt(hit)} (target < 1000 ms) -> ${hit < 1000 ? "met" : "NOT met"}`);
});

/** skopeo copy + umoci unpack + mkfs.ext4 -d, timed from the first command's spawn to the last's exit. */
async function baseline(ref: string, dir: string, sizeBytes: number): Promise<{ total: number; steps: Record<string, number> }> {
  mkdirSync(dir, { recursive: true });
  const image = join(dir, "rootfs.ext4");
  const steps: Record<string, number> = {};
  const step = async (name: string, argv: string[]) => (steps[name] = await timed(() => runChecked(argv)));
  try {
    const total = await timed(async () => {
      await step("skopeo copy", ["skopeo", "copy", "-q", "--src-tls-verify=false", `docker://${ref}`, `oci:${join(dir, "oci")}:1`]);
      await step("umoci unpack", ["umoci", "unpack", "--rootless", "--image", `${join(dir, "oci")}:1`, join(dir, "bundle")]);
      await step("mkfs.ext4 -d", ["sh", "-c", 'truncate -s "$1" "$2" && mkfs.ext4 -F -q -d "$3" "$2"', "sh", String(sizeBytes), image, join(dir, "bundle", "rootfs")]);
    });
    return { total, steps };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The CLI's "<phase> done (N.Ns)" progress lines, summed per phase. */
function phases(stderr: string): string {
  const sums = new Map<string, number>();
  for (const m of stderr.matchAll(/^(\S+) done \((\d+\.\d+)s\)$/gm)) sums.set(m[1]!, (sums.get(m[1]!) ?? 0) + Number(m[2]));
  return [...sums].map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(", ");
}

/** One layer: busybox (first layer only), 1 MiB files, small files; gzip like `docker push`. */
async function makeLayer(index: number): Promise<{ bytes: Buffer; mediaType: string; diffId: string }> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  const dir = `opt/layer${index}`;
  const entry = (name: string, content: Buffer, mode = 0o644) =>
    new Promise<void>((resolve, reject) => pack.entry({ name, mode, mtime: new Date(1_700_000_000_000) }, content, (err) => (err ? reject(err) : resolve())));
  pack.entry({ name: `${dir}/`, type: "directory", mode: 0o755 });
  pack.entry({ name: `${dir}/small/`, type: "directory", mode: 0o755 });
  if (index === 0) {
    pack.entry({ name: "bin/", type: "directory", mode: 0o755 });
    await entry("bin/busybox", readFileSync("/bin/busybox"), 0o755);
    pack.entry({ name: "bin/sh", type: "symlink", linkname: "busybox" });
  }
  for (let i = 0; i < BIG_FILES; i++) await entry(`${dir}/blob${i}.bin`, i % 3 === 0 ? randomBytes(MiB) : textLike(MiB, index * 1000 + i));
  for (let i = 0; i < SMALL_FILES; i++) await entry(`${dir}/small/f${i}.txt`, textLike(1024 + ((i * 2731) % 6144), i));
  pack.finalize();
  await ended;
  const raw = Buffer.concat(chunks);
  return { bytes: gzipSync(raw), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", diffId: sha256(raw) };
}

/** Compressible but not trivially so: varied lines like a source tree or package metadata. */
function textLike(size: number, seed: number): Buffer {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = `${seed}:${i} /usr/lib/x86_64-linux-gnu/lib${(i * 7919 + seed) % 997}.so.${i % 7} sha=${(((i + seed) * 2654435761) >>> 0).toString(16)} size=${(i * 31337) % 100000}\n`;
    lines.push(line);
    n += line.length;
  }
  return Buffer.from(lines.join("")).subarray(0, size);
}
