// Test helpers: throwaway network namespaces, named with a prefix unique to this test
// process so cleanup (and the sweep of leftovers) only ever touches this run's namespaces.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { run, runChecked } from "../../src/util/exec.ts";
import { inNetns, type NetTarget } from "../../src/net/index.ts";

export class NetnsLab {
  readonly prefix = `bgr-test-${process.pid}-${randomBytes(3).toString("hex")}-`;
  readonly #children: ChildProcess[] = [];

  /** Creates namespace `<prefix><short>` with loopback up and returns its full name. */
  async add(short: string): Promise<string> {
    const name = `${this.prefix}${short}`;
    await runChecked(["ip", "netns", "add", name]);
    await runChecked(["ip", "-n", name, "link", "set", "lo", "up"]);
    return name;
  }

  target(ns: string): NetTarget {
    return { cmdPrefix: inNetns(ns) };
  }

  /** Runs argv inside `ns` (checked). */
  async exec(ns: string, argv: string[], timeoutMs = 10_000): Promise<string> {
    return (await runChecked([...inNetns(ns), ...argv], { timeoutMs })).stdout;
  }

  /** Runs argv inside `ns`; resolves with its exit code and output. */
  async try(ns: string, argv: string[], timeoutMs = 10_000) {
    return run([...inNetns(ns), ...argv], { timeoutMs });
  }

  /** Runs `ip -n ns ARGS...` (checked). */
  async ip(ns: string, ...args: string[]): Promise<void> {
    await runChecked(["ip", "-n", ns, ...args]);
  }

  /** Starts a long-running process inside `ns`; it is killed by cleanup(). */
  spawn(ns: string, argv: string[]): ChildProcess {
    const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    this.#children.push(child);
    return child;
  }

  /** Kills this lab's processes and deletes every namespace with this run's prefix. */
  async cleanup(): Promise<void> {
    for (const child of this.#children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await new Promise((r) => child.once("close", r));
      }
    }
    const res = await run(["ip", "netns", "list"]);
    for (const line of res.stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      if (name.startsWith(this.prefix)) await run(["ip", "netns", "del", name]);
    }
  }
}

/** Waits for a line matching `pattern` on the child's stdout (a "ready" signal). */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    let errBuf = "";
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${errBuf}`)), timeoutMs);
    child.stderr?.on("data", (b) => (errBuf += b));
    child.stdout?.on("data", (b) => {
      buf += b;
      const line = buf.split("\n").find((l) => pattern.test(l));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ${pattern}: ${errBuf}`));
    });
  });
}

/** Can this process create network namespaces? (root with iproute2) */
export async function canUseNetns(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  return (await run(["ip", "netns", "list"]).catch(() => ({ code: 1 }))).code === 0;
}
