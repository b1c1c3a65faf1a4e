// The workspace benches' shared pieces (vm-run.ts, workspace-copy.ts): the generated
// repository, the local `tar c | tar x` baseline, `--timings` parsing and growing the
// busybox image so a copy through the agent has room on the root filesystem.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolvePaths } from "../src/config/index.ts";
import { type BenchHome, MiB, runChecked, timed } from "./lib.ts";

/**
 * Grows an image's filesystem to `size` (offline resize2fs adds inodes with the space): a
 * VM's root filesystem is the image's, and the image is sized to its content.
 */
export async function growImage(h: BenchHome, image: string, size: string): Promise<void> {
  const rootfs = join(resolvePaths({ BANGER_HOME: h.home }).imagesDir, image, "rootfs.ext4");
  await runChecked(["e2fsck", "-fp", rootfs]);
  await runChecked(["resize2fs", rootfs, size]);
}

/** "timings: create 1.23s, workspace 4.56s, ..." → ms per phase. */
export function parseTimings(stderr: string): Record<string, number> {
  const line = stderr.split("\n").find((l) => l.startsWith("timings:"));
  if (!line) throw new Error(`no timings line in: ${stderr}`);
  const out: Record<string, number> = {};
  for (const m of line.matchAll(/(\w+) ([\d.]+)s/g)) out[m[1]!] = Number(m[2]) * 1000;
  return out;
}

/**
 * `files` files, `totalMib` in all: 1% large random binaries (incompressible, 70% of the
 * bytes), the rest small text files (1-11 KiB) spread over ~100 directories; committed
 * (with automatic gc off: a background repack would change the tree under the bench).
 */
export async function makeRepo(repo: string, files: number, totalMib: number): Promise<void> {
  mkdirSync(repo, { recursive: true });
  const binaries = Math.max(1, Math.round(files / 100));
  const texts = files - binaries;
  const binBytes = totalMib * MiB * 0.7;
  const textBytes = totalMib * MiB - binBytes;
  const words = Array.from({ length: 512 }, (_, i) => `w${(i * 2654435761) % 99991}`);
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < texts; i++) {
    const dir = join(repo, "src", `d${i % 100}`);
    if (i < 100) mkdirSync(dir, { recursive: true });
    const want = Math.round((textBytes / texts) * (0.2 + 1.6 * rnd()));
    let s = "";
    while (s.length < want) s += `${words[Math.floor(rnd() * words.length)]}${rnd() < 0.1 ? "\n" : " "}`;
    writeFileSync(join(dir, `f${i}.txt`), s.slice(0, want));
  }
  mkdirSync(join(repo, "assets"), { recursive: true });
  for (let i = 0; i < binaries; i++) {
    const want = Math.round((binBytes / binaries) * (0.25 + 1.5 * (i / Math.max(1, binaries - 1))));
    writeFileSync(join(repo, "assets", `blob${i}.bin`), randomBytes(want));
  }
  const env = { GIT_AUTHOR_NAME: "bench", GIT_AUTHOR_EMAIL: "b@x", GIT_COMMITTER_NAME: "bench", GIT_COMMITTER_EMAIL: "b@x" };
  await runChecked(["git", "-C", repo, "init", "-q"]);
  await runChecked(["git", "-C", repo, "config", "gc.auto", "0"]);
  await runChecked(["git", "-C", repo, "add", "-A"]);
  await runChecked(["git", "-C", repo, "commit", "-q", "-m", "bench"], { env });
}

/** `tar c | tar x` of the repository (incl. .git) into a fresh local directory. */
export async function tarCopyOnce(repo: string): Promise<number> {
  const dest = mkdtempSync(join(tmpdir(), "bench-tar-"));
  await runChecked(["sync"]);
  try {
    return await timed(() => runChecked(["sh", "-c", `tar -C "$0" -cf - . | tar -C "$1" -xf -`, repo, dest]));
  } finally {
    rmSync(dest, { recursive: true, force: true });
    await runChecked(["sync"]); // its writeback does not land in the next vm run
  }
}
