// Running debootstrap: root and tool checks, the shared download cache, progress from its
// `I: ...` lines, and cancellation that leaves no process or mount behind.
//
// debootstrap runs inside `unshare --mount --pid --fork --kill-child`: the /proc it mounts in
// the target lives in a private mount namespace and every process it starts (dpkg, a
// maintainer script that starts a daemon despite policy-rc.d) is in a private PID namespace.
// Killing unshare kills debootstrap (PID 1 there), which kills the whole namespace, and the
// mounts vanish with it, so removing the work directory can never reach into the host's
// /proc or /dev. debootstrap itself installs a policy-rc.d that answers 101 (and a fake
// start-stop-daemon) while it configures packages, and removes them when done.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, cancelled, failed } from "../util/errors.ts";
import { installHint, which } from "../util/exec.ts";
import { noProgress, type Progress } from "../util/progress.ts";

export interface DebootstrapOptions {
  suite: string;
  mirror: string;
  packages: readonly string[];
  /** Shared .deb cache, reused between builds (`debootstrap --cache-dir`). */
  cacheDir: string;
  signal?: AbortSignal;
  progress?: Progress;
}

const SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]{1,62}$/;

/** debootstrap makes device nodes and files owned by many users: only root can. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new BangerError(ErrorCode.Unavailable, `${what} needs root (debootstrap creates device nodes and real file owners)`, "run bangerd as root, or use the busybox preset");
  }
}

export function requireDebootstrap(): string {
  const path = which("debootstrap");
  if (!path) throw new BangerError(ErrorCode.MissingDependency, "debootstrap not found", installHint("debootstrap"));
  return path;
}

export function debootstrapArgv(debootstrap: string, target: string, o: Pick<DebootstrapOptions, "suite" | "mirror" | "packages" | "cacheDir">): string[] {
  for (const p of o.packages) if (!PACKAGE_NAME.test(p)) throw failed(`invalid package name ${JSON.stringify(p)}`);
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--pid",
    "--fork",
    "--kill-child=SIGKILL",
    debootstrap,
    "--variant=minbase",
    `--include=${o.packages.join(",")}`,
    `--cache-dir=${o.cacheDir}`,
    o.suite,
    target,
    o.mirror,
  ];
}

/** Runs debootstrap into `target` (which must not exist yet or be empty). */
export async function runDebootstrap(target: string, o: DebootstrapOptions): Promise<void> {
  const debootstrap = requireDebootstrap();
  await mkdir(o.cacheDir, { recursive: true, mode: 0o700 });
  const argv = debootstrapArgv(debootstrap, target, o);
  const report = new DebootstrapProgress(o.progress ?? noProgress, undefined, undefined, () => readPackageLists(target));
  const tail: string[] = [];
  const code = await spawnLines(argv, o.signal, (line) => {
    report.line(line);
    tail.push(line);
    if (tail.length > 20) tail.shift();
  });
  if (code !== 0) {
    const why = [...tail].reverse().find((l) => l.startsWith("E:") || l.startsWith("W:")) ?? tail.at(-1) ?? "";
    throw failed(`debootstrap exited with status ${code}${why ? `: ${why}` : ""}`, `check that ${o.mirror} is reachable; the shared cache is ${o.cacheDir}`);
  }
  await pruneDebCache(o.cacheDir);
}

/**
 * The cache keeps every .deb it ever fetched; after a point release each package would be
 * there twice. Only the newest file per package and architecture is kept: the archive serves
 * one version of a package per suite, and it is always the most recently downloaded one.
 */
export function staleDebs(files: readonly { name: string; mtimeMs: number }[]): string[] {
  const newest = new Map<string, { name: string; mtimeMs: number }>();
  const stale: string[] = [];
  for (const f of files) {
    const m = /^([^_]+)_[^_]+_([^_]+)\.deb$/.exec(f.name);
    if (!m) continue;
    const key = `${m[1]}_${m[2]}`;
    const prev = newest.get(key);
    if (!prev) newest.set(key, f);
    else if (f.mtimeMs > prev.mtimeMs) {
      stale.push(prev.name);
      newest.set(key, f);
    } else stale.push(f.name);
  }
  return stale;
}

async function pruneDebCache(cacheDir: string): Promise<void> {
  const names = await readdir(cacheDir).catch(() => [] as string[]);
  const files = await Promise.all(names.map(async (name) => ({ name, mtimeMs: (await stat(join(cacheDir, name)).catch(() => undefined))?.mtimeMs ?? 0 })));
  for (const name of staleDebs(files)) await rm(join(cacheDir, name), { force: true });
}

/** Spawns argv (own process group), hands each output line to onLine, resolves the exit code. */
function spawnLines(argv: string[], signal: AbortSignal | undefined, onLine: (line: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PATH: SBIN_PATH, LC_ALL: "C.UTF-8", DEBIAN_FRONTEND: "noninteractive" },
    });
    // SIGKILL to unshare: --kill-child takes debootstrap (PID 1 of its namespace) and all
    // of its descendants with it.
    const onAbort = () => child.kill("SIGKILL");
    signal?.addEventListener("abort", onAbort, { once: true });
    for (const stream of [child.stdout!, child.stderr!]) {
      let rest = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop()!.slice(-4096); // a line without an end stays bounded
        for (const l of lines) onLine(l.slice(0, 1000));
      });
    }
    child.on("error", (e: NodeJS.ErrnoException) => {
      signal?.removeEventListener("abort", onAbort);
      reject(e.code === "ENOENT" ? new BangerError(ErrorCode.MissingDependency, `${argv[0]} not found`, "install it: apt-get install -y util-linux") : e);
    });
    child.on("close", (code, sig) => {
      signal?.removeEventListener("abort", onAbort);
      if (signal?.aborted) return reject(cancelled());
      resolve(code ?? (sig ? 128 : 1));
    });
  });
}

export interface DebootstrapStep {
  /** downloading | extracting | installing | configuring | checking */
  stage: string;
  /** The package or item the line names, when it names one. */
  item?: string;
}

const STAGES: [RegExp, string][] = [
  [/^I: Retrieving (\S+)/, "downloading"],
  [/^I: Extracting (\S+)/, "extracting"],
  [/^I: Unpacking (\S+)/, "installing"],
  [/^I: Configuring (\S+)/, "configuring"],
  [/^I: (Checking Release signature|Validating Packages|Resolving dependencies)/, "checking"],
  // A .deb already in the shared cache is only validated, never retrieved: it counts as got.
  [/^I: Validating (\S+) \S/, "downloading"],
];

/** What one debootstrap output line says, or undefined for lines not worth showing. */
export function parseDebootstrapLine(line: string): DebootstrapStep | undefined {
  for (const [re, stage] of STAGES) {
    const m = re.exec(line);
    if (!m) continue;
    const item = m[1]!.replace(/\.\.\.$/, "");
    // "Unpacking the base system..." and "Configuring required packages..." name no package.
    return /^(the|required|base|InRelease|Packages)$/.test(item) || stage === "checking" ? { stage } : { stage, item };
  }
  return undefined;
}

/**
 * Forwards a throttled summary, counted in packages: a stage change at once, otherwise at most
 * every `everyMs`. debootstrap names no total while it downloads (the count grows); from
 * extraction on, each stage works through its list of required or base packages, which
 * debootstrap writes to <target>/debootstrap/{required,base} once the downloads are done:
 * `lists` reads them, and the stage shows packages N/M, counting only that list's packages
 * (dpkg also reconfigures a required package's triggers while configuring the base system).
 */
export class DebootstrapProgress {
  private stage = "";
  private group: "required" | "base" = "required";
  private readonly seen = new Set<string>();
  private lastEmit = 0;
  private named: PackageLists | undefined;

  constructor(
    private readonly progress: Progress,
    private readonly everyMs = 500,
    private readonly now: () => number = Date.now,
    private readonly lists: () => PackageLists | undefined = () => undefined,
  ) {}

  line(line: string): void {
    const step = parseDebootstrapLine(line);
    if (!step) return;
    // "Unpacking the base system...", "Configuring required packages...": which list follows
    // (only such lines, which name no package: "Extracting base-files..." says nothing of it).
    const group = step.item === undefined ? (/ (base|required) /.exec(line)?.[1] as "required" | "base" | undefined) : undefined;
    const changed = step.stage !== this.stage || (group !== undefined && group !== this.group);
    if (changed) {
      this.stage = step.stage;
      if (group) this.group = group;
      else if (step.stage === "extracting" || step.stage === "downloading") this.group = "required";
      this.seen.clear();
    }
    if (step.item) this.seen.add(step.item.replace(/:.*$/, "")); // dpkg says libc6:amd64
    const t = this.now();
    if (!changed && t - this.lastEmit < this.everyMs) return;
    this.lastEmit = t;
    if (!this.named && step.stage !== "downloading" && step.stage !== "checking") this.named = this.lists();
    const list = step.stage === "downloading" || step.stage === "checking" ? undefined : this.named?.[this.group];
    const total = list?.size;
    const counted = step.item !== undefined || total !== undefined;
    this.progress({
      phase: "debootstrap",
      message: step.item ? `${step.stage} ${step.item}` : step.stage,
      ...(counted ? { done: list ? [...this.seen].filter((p) => list.has(p)).length : this.seen.size, total, unit: "packages" } : {}),
    });
  }
}

export interface PackageLists {
  required: Set<string>;
  base: Set<string>;
}

/** debootstrap's required and base package lists, once it has written them. */
export function readPackageLists(target: string): PackageLists | undefined {
  const names = (name: string) => {
    try {
      return new Set(
        readFileSync(join(target, "debootstrap", name), "utf8")
          .split(/\s+/)
          .filter((w) => w !== ""),
      );
    } catch {
      return undefined;
    }
  };
  const required = names("required");
  const base = names("base");
  return required === undefined || base === undefined ? undefined : { required, base };
}

export function debootstrapCacheDir(presetCacheDir: string): string {
  return join(presetCacheDir, "debootstrap");
}
