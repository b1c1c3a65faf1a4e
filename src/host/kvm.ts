// Is KVM usable *and fast* here? /dev/kvm can exist and still be useless: under nested
// virtualization without unrestricted-guest support, KVM emulates real-mode code in software
// and a Linux boot takes minutes, while TCG does it in seconds. So presence is not enough:
// we time a tiny guest (a 64 KiB firmware that spins ~2M loop iterations in real mode and
// exits through isa-debug-exit) under KVM. Fast KVM finishes in milliseconds; the slow kind
// takes seconds and is cut off by the timeout. The verdict is cached per host kernel.
import { mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { run, which } from "../util/exec.ts";

export type Accel = "kvm" | "tcg";

export interface KvmProbe {
  /** /dev/kvm exists. */
  present: boolean;
  /** /dev/kvm can be opened read-write by this process. */
  accessible: boolean;
  /** A tiny guest ran fast under KVM (or BANGER_ACCEL=kvm forces it). */
  fast: boolean;
  /** One line a human can read: why fast is what it is. */
  detail: string;
  /** Set when BANGER_ACCEL decided instead of the probe. */
  forced?: Accel;
  /** The probe's wall time under KVM, when it ran. */
  kvmMs?: number;
}

export interface ProbeKvmOptions {
  /** Where to cache the verdict (e.g. the state root); no caching without it. */
  cacheDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Ignore a cached verdict and probe again. */
  refresh?: boolean;
  /** Time allowed for the KVM run (default 1500 ms: fast KVM needs ~50 ms). */
  timeoutMs?: number;
}

const KVM_DEVICE = "/dev/kvm";
/** A KVM run slower than this is "slow": fast KVM needs ~50 ms including QEMU start-up. */
const FAST_THRESHOLD_MS = 1000;
const CACHE_FILE = "kvm-probe.json";

/** Reads BANGER_ACCEL; anything other than kvm or tcg is ignored (doctor can flag it). */
export function forcedAccel(env: NodeJS.ProcessEnv = process.env): Accel | undefined {
  const v = env.BANGER_ACCEL?.trim().toLowerCase();
  return v === "kvm" || v === "tcg" ? v : undefined;
}

export async function probeKvm(opts: ProbeKvmOptions = {}): Promise<KvmProbe> {
  const present = await exists(KVM_DEVICE);
  const accessible = present && (await canOpenReadWrite(KVM_DEVICE));
  const forced = forcedAccel(opts.env);
  if (forced) {
    return { present, accessible, fast: forced === "kvm", forced, detail: `forced by BANGER_ACCEL=${forced}` };
  }
  if (!present) return { present, accessible, fast: false, detail: "/dev/kvm does not exist: VMs run under TCG (slower)" };
  if (!accessible) {
    return { present, accessible, fast: false, detail: "/dev/kvm is not accessible to this user: run bangerd as root or join the kvm group" };
  }
  const cached = opts.refresh ? undefined : await readCache(opts.cacheDir);
  if (cached) return cached;
  const result = await timeKvmGuest(opts.timeoutMs ?? 1500);
  const probe: KvmProbe = { present, accessible, ...result };
  await writeCache(opts.cacheDir, probe);
  return probe;
}

/** /dev/kvm opens read-write for this process: enough for Firecracker, which has no TCG to fall back to. */
export function kvmUsable(): Promise<boolean> {
  return canOpenReadWrite(KVM_DEVICE);
}

/** The accelerator a VM should use here, with the reason. */
export async function chooseAccel(opts: ProbeKvmOptions = {}): Promise<{ accel: Accel; reason: string }> {
  const probe = await probeKvm(opts);
  return { accel: probe.fast ? "kvm" : "tcg", reason: probe.detail };
}

async function timeKvmGuest(timeoutMs: number): Promise<{ fast: boolean; detail: string; kvmMs?: number }> {
  const qemu = which("qemu-system-x86_64");
  if (!qemu) return { fast: false, detail: "qemu-system-x86_64 not found, KVM speed not probed" };
  const dir = await mkdtemp(join(tmpdir(), "banger-kvm-probe-"));
  try {
    const firmware = join(dir, "probe.bin");
    await writeFile(firmware, probeFirmware());
    const started = Date.now();
    const res = await run(probeArgv(qemu, firmware), { timeoutMs });
    const kvmMs = Date.now() - started;
    // isa-debug-exit makes QEMU exit with (value << 1) | 1 = 1 for value 0.
    if (res.code !== 1) {
      if (kvmMs >= timeoutMs) return { fast: false, kvmMs, detail: `KVM is slow here (a tiny guest did not finish in ${timeoutMs} ms; nested virtualization?): using TCG` };
      const why =
        res.stderr
          .trim()
          .split("\n")
          .filter((l) => !l.includes("warning"))
          .pop() ?? `exit status ${res.code}`;
      return { fast: false, kvmMs, detail: `KVM probe failed (${why}): using TCG` };
    }
    if (kvmMs > FAST_THRESHOLD_MS) return { fast: false, kvmMs, detail: `KVM is slow here (tiny guest took ${kvmMs} ms): using TCG` };
    return { fast: true, kvmMs, detail: `KVM is fast (tiny guest ran in ${kvmMs} ms)` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function probeArgv(qemu: string, firmware: string): string[] {
  return [
    qemu,
    "-M",
    "microvm,x-option-roms=off,rtc=off,isa-serial=off,pit=off,pic=off",
    "-accel",
    "kvm",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-m",
    "16",
    "-bios",
    firmware,
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=1",
    "-no-reboot",
  ];
}

/**
 * 64 KiB of hlt with a 14-byte program at the x86 reset vector (F000:FFF0):
 *   mov dx, 0x20 ; outer: mov cx, 0xffff ; inner: loop inner ; dec dx ; jnz outer
 *   out 0xf4, al  (isa-debug-exit: QEMU exits) ; hlt
 */
export function probeFirmware(): Buffer {
  const image = Buffer.alloc(64 * 1024, 0xf4);
  const program = [0xba, 0x20, 0x00, 0xb9, 0xff, 0xff, 0xe2, 0xfe, 0x4a, 0x75, 0xf8, 0xe6, 0xf4, 0xf4];
  Buffer.from(program).copy(image, 0xfff0);
  return image;
}

async function readCache(cacheDir: string | undefined): Promise<KvmProbe | undefined> {
  if (!cacheDir) return undefined;
  try {
    const raw = JSON.parse(await readFile(join(cacheDir, CACHE_FILE), "utf8")) as { kernel?: string; probe?: KvmProbe };
    if (raw.kernel !== release() || typeof raw.probe?.fast !== "boolean") return undefined;
    return { ...raw.probe, detail: `${raw.probe.detail} (cached)` };
  } catch {
    return undefined;
  }
}

async function writeCache(cacheDir: string | undefined, probe: KvmProbe): Promise<void> {
  if (!cacheDir) return;
  try {
    await mkdir(cacheDir, { recursive: true });
    const tmp = join(cacheDir, `${CACHE_FILE}.tmp-${process.pid}`);
    await writeFile(tmp, JSON.stringify({ kernel: release(), probe }));
    await rename(tmp, join(cacheDir, CACHE_FILE));
  } catch {
    // A cache we cannot write only costs a re-probe next time.
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Really opens it (not access(2)): a device node on a nodev mount passes access and fails open. */
async function canOpenReadWrite(path: string): Promise<boolean> {
  try {
    await (await open(path, "r+")).close();
    return true;
  } catch {
    return false;
  }
}
