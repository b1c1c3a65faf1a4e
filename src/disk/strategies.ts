// What copy-on-write clone methods this host can do in a given directory, and which one a
// VMM should get. Detection tries the real thing where it is cheap (a FICLONE of a tiny
// file) and checks tools and device nodes otherwise.
import { constants, existsSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, which } from "../util/exec.ts";

export type CloneStrategy = "qcow2" | "reflink" | "dm-snapshot" | "sparse-copy";

export interface StrategyReport {
  strategy: CloneStrategy;
  available: boolean;
  /** Why it is (not) available, in one line. */
  reason: string;
}

export interface StrategyChoice {
  strategy: CloneStrategy;
  /** Why this one was picked over the others. */
  reason: string;
  considered: StrategyReport[];
}

/** Probes every strategy for clones created inside `dir` (which must exist). */
export async function detectCloneStrategies(dir: string): Promise<StrategyReport[]> {
  return [await detectQcow2(), await detectReflink(dir), await detectDmSnapshot(), sparseCopyReport()];
}

/**
 * Picks the clone strategy for a VM run by `driver`. QEMU reads qcow2, so an overlay is
 * O(1) and needs nothing from the filesystem. Firecracker reads raw files only: reflink,
 * else a sparse copy (the only one that costs O(data)).
 */
export async function chooseCloneStrategy(driver: "qemu" | "firecracker", dir: string): Promise<StrategyChoice> {
  const considered = await detectCloneStrategies(dir);
  // dm-snapshot is detected and reported (doctor) but not used yet: its clone is a live
  // device that must be set up and torn down around every boot, which the VM lifecycle
  // does not do yet.
  const order: CloneStrategy[] = driver === "qemu" ? ["qcow2", "reflink", "sparse-copy"] : ["reflink", "sparse-copy"];
  for (const strategy of order) {
    const report = considered.find((r) => r.strategy === strategy);
    if (report?.available) {
      const skipped = considered.filter((r) => order.indexOf(r.strategy) < order.indexOf(strategy) && order.includes(r.strategy));
      const why = skipped.length ? `; ${skipped.map((s) => `${s.strategy}: ${s.reason}`).join("; ")}` : "";
      return { strategy, reason: `${strategy} for ${driver}: ${report.reason}${why}`, considered };
    }
  }
  // sparse-copy is always available, so this is unreachable; keep the type checker honest.
  return { strategy: "sparse-copy", reason: "no other strategy available", considered };
}

async function detectQcow2(): Promise<StrategyReport> {
  return which("qemu-img")
    ? { strategy: "qcow2", available: true, reason: "qemu-img creates a qcow2 overlay backed by the image (qemu only)" }
    : { strategy: "qcow2", available: false, reason: "qemu-img not found (apt-get install -y qemu-utils)" };
}

async function detectReflink(dir: string): Promise<StrategyReport> {
  let scratch: string | undefined;
  try {
    scratch = await mkdtemp(join(dir, ".reflink-probe-"));
    await writeFile(join(scratch, "a"), "banger reflink probe");
    await copyFile(join(scratch, "a"), join(scratch, "b"), constants.COPYFILE_FICLONE_FORCE);
    return { strategy: "reflink", available: true, reason: `the filesystem of ${dir} supports FICLONE` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    return { strategy: "reflink", available: false, reason: `the filesystem of ${dir} cannot reflink (${code}; btrfs and xfs can)` };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

async function detectDmSnapshot(): Promise<StrategyReport> {
  const no = (reason: string): StrategyReport => ({ strategy: "dm-snapshot", available: false, reason });
  if (process.getuid?.() !== 0) return no("needs root");
  if (!which("dmsetup")) return no("dmsetup not found (apt-get install -y dmsetup)");
  if (!which("losetup")) return no("losetup not found (apt-get install -y mount)");
  if (!existsSync("/dev/mapper/control")) return no("no /dev/mapper/control (device-mapper not available, e.g. in a container or microVM)");
  if (!existsSync("/dev/loop-control")) return no("no /dev/loop-control (loop devices not available)");
  const version = await run(["dmsetup", "version"], { timeoutMs: 5000 }).catch(() => undefined);
  if (version?.code !== 0) return no("dmsetup cannot talk to the kernel's device-mapper");
  const targets = await run(["dmsetup", "targets"], { timeoutMs: 5000 }).catch(() => undefined);
  if (!targets?.stdout.split("\n").some((l) => l.startsWith("snapshot"))) return no("the kernel has no dm snapshot target (modprobe dm-snapshot)");
  return { strategy: "dm-snapshot", available: true, reason: "device-mapper snapshot over loop devices" };
}

function sparseCopyReport(): StrategyReport {
  return { strategy: "sparse-copy", available: true, reason: "copies only the image's data blocks (costs time and space per VM)" };
}
