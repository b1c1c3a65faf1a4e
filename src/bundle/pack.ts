// makeTarZst: the producing side of bundles (make-bundle, make-kernel-bundle, tests).
//
// Reproducible: members sorted by path, mtime 0, uid/gid 0, no user/group names, permission
// bits only; compressed with `zstd -T0 --long=27` (multi-threaded zstd output does not depend
// on the thread count; a 128 MiB window is the largest a default zstd decoder accepts, so
// pulls need no memory flags). Level 19 is the default: near the best ratio at a tolerable
// speed; 20-22 (--ultra) cost several times the time for a few percent.
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { lstat, readdir, readlink, rename, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { packEntry } from "../util/tarpack.ts";
import { failed, invalidArgument } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import { isRefused, memberPath, shown } from "../util/paths.ts";
import { requireZstd } from "./extract.ts";

export interface PackOptions {
  /** zstd level 1..22 (20+ implies --ultra). Default 19. */
  level?: number;
}

export interface PackedBundle {
  path: string;
  sha256: string;
  sizeBytes: number;
}

interface PackMember {
  path: string;
  abs: string;
}

/**
 * Packs `files` (paths relative to `srcDir`; directories are included with everything under
 * them) into `outPath` as a `.tar.zst`. Only regular files, directories and symlinks.
 */
export async function makeTarZst(srcDir: string, files: readonly string[], outPath: string, opts: PackOptions = {}): Promise<PackedBundle> {
  const level = opts.level ?? 19;
  if (!Number.isInteger(level) || level < 1 || level > 22) throw invalidArgument(`zstd level must be 1..22, got ${level}`);
  const members = await collectMembers(srcDir, files);
  const tmp = `${outPath}.partial-${process.pid}`;
  try {
    await compressTar(members, tmp, level);
    const packed = await sha256File(tmp);
    await rename(tmp, outPath);
    return { ...packed, path: outPath };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function collectMembers(srcDir: string, files: readonly string[]): Promise<PackMember[]> {
  const out = new Map<string, PackMember>();
  const visit = async (rel: string): Promise<void> => {
    const path = memberPath(rel);
    if (isRefused(path) || path === "") throw invalidArgument(`cannot pack ${shown(rel)}: give paths inside ${srcDir}${isRefused(path) ? ` (${path.refused})` : ""}`);
    const abs = join(srcDir, path);
    out.set(path, { path, abs });
    const st = await lstat(abs);
    if (st.isDirectory()) for (const name of await readdir(abs)) await visit(posix.join(path, name));
  };
  for (const f of files) await visit(f);
  return [...out.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function compressTar(members: readonly PackMember[], outPath: string, level: number): Promise<void> {
  const args = ["-q", "-f", `-${level}`, ...(level > 19 ? ["--ultra"] : []), "-T0", "--long=27", "-o", outPath];
  const child = spawn(requireZstd(), args, { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => void (stderr += b.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const pack = tar.pack();
  const feeding = pipeline(pack, child.stdin);
  try {
    for (const m of members) await addMember(pack, m);
    pack.finalize();
    await feeding;
  } catch (err) {
    child.kill("SIGKILL");
    pack.destroy();
    await feeding.catch(() => undefined); // its "premature close" is a consequence of err
    await exited;
    throw err;
  }
  const code = await exited;
  if (code !== 0) throw failed(`zstd exited with status ${code}: ${stderr.trim().split("\n").pop() ?? ""}`);
}

async function addMember(pack: tar.Pack, m: PackMember): Promise<void> {
  const st = await lstat(m.abs);
  const base = { name: m.path, mode: st.mode & 0o7777, mtime: new Date(0), uid: 0, gid: 0, uname: "", gname: "" };
  if (st.isDirectory()) return packEntry(pack, { ...base, type: "directory" });
  if (st.isSymbolicLink()) return packEntry(pack, { ...base, type: "symlink", linkname: await readlink(m.abs) });
  if (!st.isFile()) throw invalidArgument(`cannot pack ${m.abs}: only regular files, directories and symlinks go into bundles`);
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ ...base, type: "file", size: st.size }, (err) => (err ? reject(err) : resolve()));
    pipeline(createReadStream(m.abs), sink).catch(reject);
  });
}
