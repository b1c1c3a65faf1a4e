// Issue 3's numbers: pulling a 512 MiB image bundle (imagecat.pullImageBundle: download,
// sha256, cache copy, zstd, hardened tar, publish) from a local HTTP server, against
// `curl -s URL | zstd -d | tar -x` on the same file in the same run. Median of several runs
// each, alternating. Targets: ratio <= 1.3; peak RSS of the pulling process < 150 MiB.
//
// Run: node --import tsx bench/bundle-pull.ts      (defaults BENCH_RUNS=9, BENCH_ZSTD_LEVEL=3: making the bundle at
// level 19 takes minutes here, and decoding speed hardly depends on the level)
//
// Our pull runs in a child process, this file bundled by esbuild as bangerd is (so the RSS is
// that of production code, not of a TypeScript loader), timed inside it (node start-up is not
// counted; the curl pipeline is timed from spawn to exit). Its peak RSS is node's own
// (process.resourceUsage().maxRSS); /usr/bin/time's figure for the same child is the largest
// of node and its zstd decoder, shown too. The rootfs mixes 25% random, 37.5% text-like and
// 37.5% zero 1 MiB blocks, like a filled-in ext4 image; note that banger writes zero blocks
// as holes while tar writes them out. BENCH_DENSE=1 makes those blocks text-like instead, so
// both sides write the same 512 MiB. CPU (user + system; node start-up included on our side) is
// shown per side: on a VM whose freed memory goes back to the host (virtio-balloon free page
// reporting), every page-cache page a run touches anew costs a host fault, so writing the
// 128 MiB cache copy, which the baseline doesn't make, weighs more there than its size suggests.
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { makeTarZst } from "../src/bundle/index.ts";
import { startTestServer } from "../test/kits/bundle.ts";
import { pullImageBundle } from "../src/imagecat/index.ts";

const MiB = 1024 * 1024;
/** What /usr/bin/time prints: peak RSS (KiB), user and system CPU seconds. */
const TIME_FORMAT = "%M %U %S";

if (process.argv[2] === "--child") await child(JSON.parse(process.argv[3]!));
else await main();

async function child(args: { url: string; sha256: string; size: number; root: string }): Promise<void> {
  const started = process.hrtime.bigint();
  await pullImageBundle(
    { name: "bench", tarball_url: args.url, tarball_sha256: args.sha256, size_bytes: args.size },
    { imagesDir: join(args.root, "images"), cacheDir: join(args.root, "cache"), tmpDir: join(args.root, "tmp") },
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS }));
}

async function main(): Promise<void> {
  const runs = Number(process.env.BENCH_RUNS ?? 9);
  const level = Number(process.env.BENCH_ZSTD_LEVEL ?? 3);
  const dense = process.env.BENCH_DENSE === "1";
  const work = mkdtempSync(join(tmpdir(), "bgr-bench-pull-"));
  const server = await startTestServer();
  try {
    const bundle = await makeBundle(work, level, dense);
    console.log(`bundle: ${(bundle.sizeBytes / MiB).toFixed(1)} MiB compressed (zstd -${level} --long=27), 512 MiB rootfs${dense ? " without zero blocks" : ""}`);
    server.route("/bundle.tar.zst", { file: bundle.path });
    const childJs = await bundleChild(work);
    const url = server.url("/bundle.tar.zst");
    const ours: number[] = [];
    const curl: number[] = [];
    const rss: number[] = [];
    const treeRss: number[] = [];
    const oursCpu: number[] = [];
    const curlCpu: number[] = [];
    for (let i = 0; i < runs; i++) {
      const pullOurs = async () => {
        const root = join(work, `run${i}`);
        mkdirSync(root);
        execFileSync("sync"); // start each run without the previous run's dirty pages
        const r = await runOurs(childJs, url, bundle.sha256, bundle.sizeBytes, root);
        ours.push(r.ms);
        rss.push(r.maxRssKiB / 1024);
        treeRss.push(r.treeRssKiB / 1024);
        oursCpu.push(r.cpuMs);
        rmSync(root, { recursive: true, force: true });
      };
      const pullCurl = async () => {
        execFileSync("sync");
        const c = await runCurl(url, join(work, `curl${i}`));
        curl.push(c.ms);
        curlCpu.push(c.cpuMs);
        rmSync(join(work, `curl${i}`), { recursive: true, force: true });
      };
      // Alternating which goes first, so neither always inherits the other's writeback.
      if (i % 2 === 0) await pullOurs().then(pullCurl);
      else await pullCurl().then(pullOurs);
      console.log(
        `run ${i + 1}: banger ${ours[i]!.toFixed(0)} ms (CPU ${oursCpu[i]!.toFixed(0)} ms, node peak RSS ${rss[i]!.toFixed(0)} MiB)   curl|zstd|tar ${curl[i]!.toFixed(0)} ms (CPU ${curlCpu[i]!.toFixed(0)} ms)`,
      );
    }
    const ratio = median(ours) / median(curl);
    console.log(`median: banger ${median(ours).toFixed(0)} ms, curl|zstd|tar ${median(curl).toFixed(0)} ms, ratio ${ratio.toFixed(2)} (target <= 1.3)`);
    console.log(`CPU (user + system, all processes) median: banger ${median(oursCpu).toFixed(0)} ms, curl|zstd|tar ${median(curlCpu).toFixed(0)} ms`);
    console.log(`peak RSS of the pulling node process: ${Math.max(...rss).toFixed(0)} MiB (target < 150); largest of node and its zstd child: ${Math.max(...treeRss).toFixed(0)} MiB`);
  } finally {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

async function makeBundle(work: string, level: number, dense: boolean) {
  const src = join(work, "src");
  mkdirSync(src);
  const out = createWriteStream(join(src, "rootfs.ext4"));
  const text = Buffer.from(Array.from({ length: 20000 }, (_, i) => `/usr/lib/x86_64-linux-gnu/lib${i % 997}.so.${i % 7} mode=0644 uid=0 gid=0 size=${(i * 7919) % 100000}\n`).join("")).subarray(
    0,
    MiB,
  );
  for (let i = 0; i < 512; i++) {
    const kind = i % 8;
    const block = kind < 2 ? randomBytes(MiB) : kind < 5 || dense ? text : Buffer.alloc(MiB);
    if (i === 0) block.writeUInt16LE(0xef53, 1080); // ext4 superblock magic, so the image check passes
    if (!out.write(block)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  writeFileSync(join(src, "manifest.json"), JSON.stringify({ name: "bench", distro: "synthetic", arch: "x86_64" }));
  return makeTarZst(src, ["rootfs.ext4", "manifest.json"], join(work, "bundle.tar.zst"), { level });
}

/** This file as one ESM bundle, with the bundle folder's workers beside it (workers/), built the way scripts/build.mjs builds bangerd. */
async function bundleChild(work: string): Promise<string> {
  const { build } = await import("esbuild"); // only here: the bundled child never loads it
  const bundleDir = new URL("../src/bundle/", import.meta.url).pathname;
  writeFileSync(join(work, "package.json"), '{"type":"module"}\n'); // the workers' .js files are ES modules
  await build({
    entryPoints: { "pull-child": new URL(import.meta.url).pathname, "workers/feeder": `${bundleDir}feeder-worker.ts`, "workers/unpacker": `${bundleDir}unpacker-worker.ts` },
    outdir: work,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    external: ["better-sqlite3", "esbuild"],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: "warning",
  });
  return join(work, "pull-child.js");
}

/** Reads /usr/bin/time's last stderr line (TIME_FORMAT): peak RSS (KiB) and CPU seconds of the command's process tree. */
function parseTime(stderr: string): { treeRssKiB: number; cpuMs: number } {
  const [rss, user, sys] = stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { treeRssKiB: rss!, cpuMs: (user! + sys!) * 1000 };
}

function runOurs(childJs: string, url: string, sha256: string, size: number, root: string): Promise<{ ms: number; maxRssKiB: number; treeRssKiB: number; cpuMs: number }> {
  const args = JSON.stringify({ url, sha256, size, root });
  return new Promise((resolve, reject) => {
    const p = spawn("/usr/bin/time", ["-f", TIME_FORMAT, process.execPath, childJs, "--child", args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (b) => (out += b));
    p.stderr.on("data", (b) => (err += b));
    p.on("close", (code) => {
      if (code !== 0) return reject(new Error(`pull failed: ${err}`));
      resolve({ ...JSON.parse(out), ...parseTime(err) });
    });
  });
}

function runCurl(url: string, dir: string): Promise<{ ms: number; cpuMs: number }> {
  mkdirSync(dir);
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    // time's own start-up (a fork and exec, about 1 ms) is inside this figure; node's is not inside ours.
    const p = spawn("/usr/bin/time", ["-f", TIME_FORMAT, "bash", "-c", `set -o pipefail; curl -sf '${url}' | zstd -dq | tar -x -C '${dir}'`], { stdio: ["ignore", "inherit", "pipe"] });
    let err = "";
    p.stderr.on("data", (b) => (err += b));
    p.on("close", (code) => {
      if (code !== 0) return reject(new Error(`curl pipeline exited ${code}: ${err}`));
      resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, cpuMs: parseTime(err).cpuMs });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
