// Issue 4's boot number: `banger vm create --image busybox` (daemon already running; it
// returns once the guest agent answered its handshake) against booting the same kernel,
// initramfs and disk with a bare qemu-system-x86_64 command line (the exact argv banger's
// qemu driver builds, on a fresh qcow2 overlay made before the clock starts) until the
// agent's first byte on its socket. Runs alternate; medians.
// Target: overhead = banger - bare <= 0.10 * bare + 100 ms.
//
// Run: node --import tsx bench/vm-boot.ts        (BENCH_RUNS=7; BANGER_ACCEL=tcg|kvm forces
// the accelerator for both sides; here nested KVM is slow, so both boot under TCG)
import { statSync } from "node:fs";
import { join } from "node:path";
import { benchHome, bootBareQemu, fmt, median, processArgv, runBench, showVm, since } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome({ bootable: true });
  const kernel = "debian-6.1-cloud";

  // Warm-up, untimed: starts the daemon, runs the one-off KVM speed probe (cached in the
  // state root, which the bare boots share), and warms the page cache for both sides.
  await h.banger(["vm", "create", "--name", "warm", "--image", "busybox"]);
  const warm = await showVm(h, "warm");
  const bangerArgv = processArgv(warm.pid!);
  await h.banger(["vm", "rm", "-f", "warm"]);
  const warmBare = await bootBareQemu(h, { id: "bare-warm", image: "busybox", kernel, cpus: warm.cpus, memoryBytes: warm.memoryBytes });
  warmBare.agent.close();
  await warmBare.kill();
  const diff = argvDiff(bangerArgv, warmBare.argv);
  console.log(`argv: bare qemu ${diff.length === 0 ? "matches" : "DIFFERS from"} banger's (paths and hostname aside)`);
  console.log(`  ${warmBare.argv.join(" ")}`);
  for (const d of diff) console.log(`  differs: ${d}`);

  const ours: number[] = [];
  const bare: number[] = [];
  const bareHandshake: number[] = [];
  const spawnAt: number[] = [];
  const guestBoot: number[] = [];
  const bareGuestBoot: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const name = `boot${i}`;
    const wallStart = performance.timeOrigin + performance.now();
    const t = process.hrtime.bigint();
    const created = await h.banger(["vm", "create", "--name", name, "--image", "busybox", "--cpus", String(warm.cpus), "--memory", String(warm.memoryBytes / 1024 ** 2)]);
    ours.push(since(t));
    // The driver writes vmm.pid right after spawning qemu: its mtime splits banger's time
    // into before the VMM exists (CLI, RPC, clone) and the boot itself.
    const vm = await showVm(h, name);
    const runtimeDir = join(h.home, "run", "vms", vm.id);
    const spawned = statSync(join(runtimeDir, "vmm.pid")).mtimeMs;
    spawnAt.push(spawned - wallStart);
    guestBoot.push(statSync(join(runtimeDir, "console.log")).mtimeMs - spawned);
    const phases = [...created.stderr.matchAll(/^(\S+) done \((\d+\.\d+)s\)$/gm)].map((m) => `${m[1]} ${m[2]}s`).join(", ");
    await h.banger(["vm", "rm", "-f", name]);

    const bareVm = await bootBareQemu(h, { id: `bare${i}`, image: "busybox", kernel, cpus: warm.cpus, memoryBytes: warm.memoryBytes });
    bareVm.agent.close();
    await bareVm.kill();
    bare.push(bareVm.firstByteMs);
    bareGuestBoot.push(bareVm.consoleMs);
    bareHandshake.push(bareVm.handshakeMs);
    console.log(
      `run ${i + 1}: banger vm create ${fmt(ours[i]!)} (qemu spawned at +${spawnAt[i]!.toFixed(0)} ms; ${phases})   bare qemu → agent first byte ${fmt(bareVm.firstByteMs)} (handshake ${fmt(bareVm.handshakeMs)})`,
    );
  }
  // The fixed cost of any CLI command: node start-up, connecting, one RPC.
  const cliFloor: number[] = [];
  for (let i = 0; i < 10; i++) cliFloor.push(await h.time(["vm", "ls"]));

  const b = median(ours);
  const q = median(bare);
  const overhead = b - q;
  const budget = 0.1 * q + 100;
  console.log(`median: banger vm create ${fmt(b)}, bare qemu first byte ${fmt(q)} (handshake ${fmt(median(bareHandshake))}), ${warm.cpus} cpu, ${warm.memoryBytes / 1024 ** 2} MiB`);
  console.log(`where banger's time goes (medians): qemu spawned at +${median(spawnAt).toFixed(0)} ms (any CLI call costs ${median(cliFloor).toFixed(0)} ms: banger vm ls, 10 runs);`);
  console.log(
    `  spawn → the console's last line (agent listening) ${median(guestBoot).toFixed(0)} ms under banger vs ${median(bareGuestBoot).toFixed(0)} ms bare; spawn → done ${(b - median(spawnAt)).toFixed(0)} ms`,
  );
  console.log(`overhead = banger - bare = ${overhead.toFixed(0)} ms; target <= 0.10*bare + 100 ms = ${budget.toFixed(0)} ms -> ${overhead <= budget ? "met" : "NOT met"}`);
});

/** Arguments that differ between two qemu argvs, each one's runtime dir, disk and hostname blanked out. */
function argvDiff(a: string[], b: string[]): string[] {
  const norm = (argv: string[]) => {
    const text = argv.join("\n");
    const runtime = text.match(/path=([^,\n]+)\/console\.log/)?.[1] ?? "";
    const disk = text.match(/file=([^,\n]+),format=/)?.[1] ?? "";
    return text
      .split(runtime)
      .join("RUNTIME")
      .split(disk)
      .join("DISK")
      .replace(/banger\.hostname=\S+/, "banger.hostname=NAME")
      .split("\n");
  };
  const [x, y] = [norm(a), norm(b)];
  const out: string[] = [];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) out.push(`banger ${JSON.stringify(x[i])} vs bare ${JSON.stringify(y[i])}`);
  return out;
}
