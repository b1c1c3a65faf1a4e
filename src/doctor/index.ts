// Package doctor answers "is this host ready for banger?": one check per thing banger uses,
// each pass / warn / fail with the exact command that fixes a failure.
//
// It only looks; it never installs or changes anything. Probes that other modules also need
// (KVM speed, clone strategies, which VMM new VMs get) live with those modules and are passed
// in (probes.ts gathers the real ones for `banger doctor`); doctor just reports them.
import { accessSync, constants, existsSync, readdirSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { loadConfig, minFreeBytes, type Config, type Paths } from "../config/index.ts";
import { isValidName } from "../util/names.ts";
import { installHint, which } from "../util/exec.ts";
import { humanBytes } from "../util/human.ts";
import { findLeftovers } from "../util/scratch.ts";

export { hostProbes } from "./probes.ts";

export type CheckStatus = "pass" | "warn" | "fail";

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** The command (or step) that fixes a warn/fail. */
  fix?: string;
  /** A failed check with this set means no VM can boot on this host. */
  neededToBoot: boolean;
}

export interface DoctorReport {
  checks: Check[];
  /** The VMM new VMs get here and why (also the "vmm" check), when the vmm probe ran. */
  vmm?: { name: string; reason: string };
  /** True when every check needed to boot a VM passes. */
  canBoot: boolean;
}

/** Which VMM new VMs get and why (vmm's chooseVmm); `problem` when the configured one cannot run here. */
export interface VmmVerdict {
  vmm: "qemu" | "firecracker";
  reason: string;
  problem?: { message: string; hint?: string };
}

/** Extra probes supplied by the modules that own them (KVM speed, disk cloning, the VMM choice). */
export interface DoctorProbes {
  kvmSpeed?: () => Promise<{ fast: boolean; detail: string }>;
  /** Given the config file's contents (empty when unreadable). */
  vmm?: (config: Config) => Promise<VmmVerdict>;
  /** For disks of VMs run by `vmm`. */
  cloneStrategy?: (dir: string, vmm: VmmVerdict["vmm"]) => Promise<{ strategy: string; detail: string }>;
  agentBinary?: () => string | undefined;
}

function toolCheck(tool: string, neededToBoot: boolean, what: string): Check {
  const path = which(tool);
  if (path) return { name: tool, status: "pass", detail: `${path} (${what})`, neededToBoot };
  return { name: tool, status: neededToBoot ? "fail" : "warn", detail: `not found (${what})`, fix: installHint(tool).replace(/^install it: /, ""), neededToBoot };
}

function deviceCheck(name: string, path: string, what: string, fix: string, neededToBoot: boolean): Check {
  if (!existsSync(path)) return { name, status: neededToBoot ? "fail" : "warn", detail: `${path} missing (${what})`, fix, neededToBoot };
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return { name, status: "pass", detail: `${path} (${what})`, neededToBoot };
  } catch {
    return { name, status: neededToBoot ? "fail" : "warn", detail: `${path} not accessible by this user`, fix: `run banger as root, or add the user to the group owning ${path}`, neededToBoot };
  }
}

function bridgeCheck(): Check {
  const present = existsSync("/sys/module/bridge") || existsSync("/proc/sys/net/bridge");
  return present
    ? { name: "bridge", status: "pass", detail: "kernel bridge support present", neededToBoot: false }
    : { name: "bridge", status: "warn", detail: "bridge module not loaded (VM networking)", fix: "modprobe bridge", neededToBoot: false };
}

/** The config file's contents; an unreadable one is the daemon's error to report, doctor checks the rest. */
function readableConfig(paths: Paths): Config {
  try {
    return loadConfig(paths);
  } catch {
    return {};
  }
}

/** Free space where VM disks live (the root unless vms/ is its own filesystem) against the floor. */
function diskCheck(paths: Paths): Check {
  let dir = existsSync(paths.vmsDir) ? paths.vmsDir : paths.root;
  while (!existsSync(dir) && dir !== "/") dir = dir.replace(/\/[^/]*$/, "") || "/";
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize;
  const floor = minFreeBytes(readableConfig(paths));
  const detail = `${humanBytes(free)} free under ${paths.root}; the floor (min_free_bytes) is ${humanBytes(floor)}`;
  const fix = `free space on the filesystem holding ${paths.root}`;
  if (free < floor) return { name: "disk", status: "fail", detail: `${detail}: vm create, start and resume refuse`, fix, neededToBoot: true };
  if (free < 10 * 1024 ** 3) return { name: "disk", status: "warn", detail: `${detail} (images want several GiB)`, fix, neededToBoot: false };
  return { name: "disk", status: "pass", detail, neededToBoot: false };
}

export async function runDoctor(paths: Paths, probes: DoctorProbes = {}): Promise<DoctorReport> {
  const checks: Check[] = [];
  const kvm = deviceCheck("kvm", "/dev/kvm", "hardware virtualization", "modprobe kvm_intel || modprobe kvm_amd (and enable virtualization in firmware)", false);
  if (kvm.status === "pass" && probes.kvmSpeed) {
    const speed = await probes.kvmSpeed();
    if (!speed.fast)
      Object.assign(kvm, {
        status: "warn",
        detail: `${kvm.detail}; ${speed.detail}`,
        fix: "nothing required (VMs run under TCG); for full speed use a host with hardware virtualization, or BANGER_ACCEL=kvm to force KVM",
      });
    else kvm.detail = `${kvm.detail}; ${speed.detail}`;
  } else if (kvm.status !== "pass") {
    kvm.detail += "; VMs will run under QEMU TCG (slower)";
  }
  checks.push(kvm);

  const verdict = await probes.vmm?.(readableConfig(paths));
  if (verdict) checks.push(vmmCheck(verdict));
  const firecrackerNeeded = verdict?.vmm === "firecracker";
  const firecracker = toolCheck("firecracker", firecrackerNeeded, firecrackerNeeded ? "Firecracker VMM" : "Firecracker VMM, optional: QEMU is used without it");
  if (firecracker.status !== "pass") firecracker.fix = `install a firecracker release binary on PATH (no Debian package)${firecrackerNeeded ? "" : "; QEMU works meanwhile"}`;
  checks.push(firecracker);
  checks.push(toolCheck("qemu-system-x86_64", verdict ? verdict.vmm === "qemu" : firecracker.status !== "pass", "QEMU microvm VMM"));
  checks.push(toolCheck("qemu-img", true, "copy-on-write qcow2 root disks"));
  checks.push(toolCheck("mkfs.ext4", true, "building root disks"));
  checks.push(toolCheck("debugfs", true, "ownership and modes inside root disks"));
  checks.push(toolCheck("zstd", true, "kernel and image bundles"));
  checks.push(toolCheck("debootstrap", false, "the debian image presets"));
  checks.push(deviceCheck("tun", "/dev/net/tun", "tap devices for VM networking", "modprobe tun", false));
  checks.push(toolCheck("nft", false, "NAT for VM networking"));
  checks.push(toolCheck("ip", false, "bridge and tap setup"));
  checks.push(bridgeCheck());
  checks.push(diskCheck(paths));

  if (probes.cloneStrategy) {
    const clone = await probes.cloneStrategy(paths.root, verdict?.vmm ?? "qemu");
    checks.push({ name: "disk-clone", status: clone.strategy === "sparse-copy" ? "warn" : "pass", detail: `${clone.strategy}: ${clone.detail}`, neededToBoot: false });
  }
  if (probes.agentBinary) {
    const agent = probes.agentBinary();
    checks.push(
      agent
        ? { name: "guest-agent", status: "pass", detail: agent, neededToBoot: true }
        : { name: "guest-agent", status: "fail", detail: "the guest agent is not built", fix: "bash scripts/setup.sh (in the banger repository)", neededToBoot: true },
    );
  }
  checks.push(await leftoversCheck(paths));
  checks.push(firstVmCheck(paths));
  const vmm = verdict && { name: verdict.vmm, reason: verdict.reason };
  return { checks, ...(vmm && { vmm }), canBoot: !checks.some((c) => c.status === "fail" && c.neededToBoot) };
}

/** "new VMs get qemu (vmm unset; firecracker not on PATH)"; a configured VMM that cannot run fails. */
function vmmCheck(v: VmmVerdict): Check {
  if (v.problem) return { name: "vmm", status: "fail", detail: `new VMs are refused: ${v.problem.message}`, fix: v.problem.hint, neededToBoot: true };
  return { name: "vmm", status: "pass", detail: `new VMs get ${v.vmm} (${v.reason})`, neededToBoot: true };
}

/** Names under `dir` holding `file` (installed kernels or images; staging dirs start with a dot); undefined when unreadable. */
function installedNames(dir: string, file: string): string[] | undefined {
  try {
    return readdirSync(dir)
      .filter((n) => isValidName(n) && existsSync(join(dir, n, file)))
      .sort();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? [] : undefined;
  }
}

/** What a first VM still needs: a kernel and an image (a fresh root has neither), and defaults that exist. */
function firstVmCheck(paths: Paths): Check {
  const name = "first-vm";
  const kernels = installedNames(paths.kernelsDir, "vmlinux");
  const images = installedNames(paths.imagesDir, "rootfs.ext4");
  if (!kernels || !images) return { name, status: "warn", detail: `cannot look for kernels and images under ${paths.root} as this user`, fix: "run banger doctor as root", neededToBoot: false };
  const missing = [...(kernels.length ? [] : ["kernel"]), ...(images.length ? [] : ["image"])];
  if (missing.length > 0) {
    const fix = [...(kernels.length ? [] : ["banger kernel import --debian"]), ...(images.length ? [] : ["banger image build --preset busybox"])].join(" && ");
    return {
      name,
      status: "warn",
      detail: `no ${missing.join(" and no ")} yet: a first VM needs a kernel and an image`,
      fix: `${fix} (or just \`banger vm run\`, which offers to build what is missing)`,
      neededToBoot: false,
    };
  }
  const config = readableConfig(paths);
  for (const [key, have, kind] of [
    ["default_kernel", kernels, "kernel"],
    ["default_image", images, "image"],
  ] as const) {
    const named = config[key];
    if (named && !have.includes(named)) {
      return { name, status: "warn", detail: `${key} names ${kind} ${named}, which is not here (${kind}s: ${have.join(", ")})`, fix: `banger config set ${key} ${have[0]}`, neededToBoot: false };
    }
  }
  const chosen = (key: "default_kernel" | "default_image", have: string[]) => config[key] ?? (have.length === 1 ? have[0] : undefined);
  const kernel = chosen("default_kernel", kernels);
  const image = chosen("default_image", images);
  if (!image)
    return {
      name,
      status: "warn",
      detail: `${images.length} images (${images.join(", ")}) and no default_image: VMs need --image`,
      fix: `banger config set default_image ${images[0]}`,
      neededToBoot: false,
    };
  return {
    name,
    status: "pass",
    detail: `image ${image}${kernel ? `, kernel ${kernel}` : ""} (${kernels.length} kernel${kernels.length === 1 ? "" : "s"}, ${images.length} image${images.length === 1 ? "" : "s"})`,
    neededToBoot: false,
  };
}

/** Staging and temp files killed builds, imports and pulls left under the root, and the space they hold. */
async function leftoversCheck(paths: Paths): Promise<Check> {
  const left = await findLeftovers(paths);
  if (left.length === 0) return { name: "leftovers", status: "pass", detail: `no staging or temp files left under ${paths.root}`, neededToBoot: false };
  const bytes = left.reduce((n, l) => n + l.bytes, 0);
  const shown =
    left
      .slice(0, 3)
      .map((l) => l.path)
      .join(", ") + (left.length > 3 ? ", ..." : "");
  return {
    name: "leftovers",
    status: "warn",
    neededToBoot: false,
    detail: `${left.length} staging/temp file(s) of interrupted operations hold ${humanBytes(bytes)}: ${shown}`,
    fix: "restart the daemon (`banger daemon stop`; the next command starts it): it removes them at start (unless an operation is running now)",
  };
}
