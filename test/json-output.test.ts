// The JSON contract of `--json`: camelCase keys, sizes in bytes, arch amd64/arm64 (catalogs
// may say x86_64), image sizes used and virtual, and a failing command's error as JSON on
// stdout with the usual exit status. No VM boots here: `vm create --no-start` makes the
// record and its disk only.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { CONFIG_KEYS } from "../src/config/index.ts";
import { RpcClient } from "../src/rpc/index.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "./helpers.ts";

/** Every key of a JSON value with its path ("[0].stats.memTotalBytes"). */
function keys(value: unknown, path = ""): { key: string; path: string }[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => keys(v, `${path}[${i}]`));
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => [{ key: k, path: `${path}.${k}` }, ...keys(v, `${path}.${k}`)]);
}

/** The keys that break the convention: snake_case, or a size in another unit than bytes. */
function offending(value: unknown, allowed: Set<string> = new Set()): string[] {
  return keys(value)
    .filter(({ key }) => !allowed.has(key) && (key.includes("_") || /(Kib|Mib|Gib|Kb|Mb|Gb)$/i.test(key)))
    .map(({ path }) => path);
}

describe("--json output", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env, timeoutMs: 300_000 });
  const json = async (args: string[]) => {
    const r = await banger(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };

  before(async () => {
    // The test catalog names its image's arch x86_64, as catalogs in the wild do.
    ({ env } = await prepareBootableHome(home));
    await mustRun(banger(["vm", "create", "--no-start", "--name", "j1", "--image", "busybox", "--memory", "384M"]));
    await mustRun(banger(["config", "set", "default_image", "busybox"]));
    await mustRun(banger(["config", "set", "min_free_bytes", "1G"]));
    await mustRun(banger(["config", "set", "network.tap_pool", "1"]));
  });
  after(async () => {
    await banger(["vm", "rm", "-f", "j1"]);
    await stopDaemon(home);
    cleanup();
  });

  it("has only camelCase keys and byte sizes in the main outputs", async () => {
    const outputs: [string[], unknown][] = [];
    for (const args of [
      ["vm", "ls", "--json"],
      ["vm", "show", "j1", "--json"],
      ["image", "ls", "--json"],
      ["image", "show", "busybox", "--json"],
      ["image", "ls", "--available", "--json"],
      ["kernel", "ls", "--json"],
      ["kernel", "show", "debian-6.1-cloud", "--json"],
      ["kernel", "ls", "--available", "--json"],
      ["session", "ls", "--json"],
      ["daemon", "status", "--json"],
      ["net", "status", "--json"],
    ]) {
      outputs.push([args, await json(args)]);
    }
    const doctor = await banger(["doctor", "--json"]); // exits 1 on a host that cannot boot VMs: its JSON is what counts here
    outputs.push([["doctor", "--json"], JSON.parse(doctor.stdout)]);
    for (const [args, value] of outputs) assert.deepEqual(offending(value), [], `banger ${args.join(" ")}`);
    // Something was walked: the lists are not empty.
    assert.ok(outputs.every(([args, v]) => !Array.isArray(v) || v.length > 0 || args[0] === "session" || args.includes("--available")));
  });

  it("prints config keys as users type them, and nothing else in snake_case", async () => {
    const all = (await json(["config", "get", "--json"])) as { key: string; value: unknown; source: string }[];
    assert.deepEqual(offending(all), [], "config get --json: the entries' own fields are camelCase");
    const names = all.map((e) => e.key);
    for (const k of ["default_image", "min_free_bytes", "network.tap_pool"]) assert.ok(names.includes(k), `${k} in ${JSON.stringify(all)}`);
    assert.ok(
      names.every((k) => Object.hasOwn(CONFIG_KEYS, k)),
      "every key is one `config set` takes",
    );
  });

  it("says memory in bytes, and takes human sizes for it", async () => {
    const vm = (await json(["vm", "show", "j1", "--json"])) as { memoryBytes: number; memoryMib?: unknown };
    assert.equal(vm.memoryBytes, 384 * 1024 ** 2);
    assert.equal(vm.memoryMib, undefined);
    const set = (await json(["vm", "set", "j1", "--memory", "1G", "--json"])) as { memoryBytes: number };
    assert.equal(set.memoryBytes, 1024 ** 3);
    assert.match((await banger(["vm", "show", "j1"])).stdout, /^memory:\s+1\.0 GiB$/m);
  });

  it("takes memoryBytes over the socket in whole MiB, and refuses the old memoryMib rather than ignore it", async () => {
    const rpc = await RpcClient.connect(join(home, "run", "bangerd.sock"));
    try {
      await assert.rejects(rpc.call("vm.set", { name: "j1", memoryMib: 512 }), /"memoryMib" is now "memoryBytes"/);
      await assert.rejects(rpc.call("vm.set", { name: "j1", memoryBytes: 512 * 1024 ** 2 + 1 }), /whole number of MiB/);
      const v = (await rpc.call("vm.set", { name: "j1", memoryBytes: 768 * 1024 ** 2 })) as { memoryBytes: number };
      assert.equal(v.memoryBytes, 768 * 1024 ** 2);
    } finally {
      rpc.close();
    }
  });

  it("shows an image's used and virtual size, in bytes and humanized", async () => {
    const image = (await json(["image", "show", "busybox", "--json"])) as { sizeBytes: number; usedBytes: number };
    assert.ok(Number.isSafeInteger(image.usedBytes) && image.usedBytes > 0, `usedBytes ${image.usedBytes}`);
    assert.ok(image.usedBytes < image.sizeBytes, `a sparse rootfs uses less than its virtual size (${image.usedBytes} < ${image.sizeBytes})`);
    const [listed] = (await json(["image", "ls", "--json"])) as { usedBytes: number }[];
    assert.equal(listed?.usedBytes, image.usedBytes);
    assert.match((await banger(["image", "show", "busybox"])).stdout, /^size:\s+\d+(\.\d)? [KMG]iB used, \d+(\.\d)? [KMG]iB virtual$/m);
    assert.match((await banger(["image", "ls"])).stdout, /^NAME\s+KERNEL\s+ARCH\s+USED\s+VIRTUAL\s/);
  });

  it("names the architecture amd64 even where the catalog said x86_64", async () => {
    const image = (await json(["image", "show", "busybox", "--json"])) as { arch: string };
    assert.equal(image.arch, "amd64");
    const [entry] = (await json(["image", "ls", "--available", "--json"])) as { arch: string; kernelRef: string; sizeBytes: number }[];
    assert.deepEqual([entry?.arch, entry?.kernelRef, typeof entry?.sizeBytes], ["amd64", "debian-6.1-cloud", "number"]);
    const kernel = (await json(["kernel", "show", "debian-6.1-cloud", "--json"])) as { arch: string };
    assert.equal(kernel.arch, "amd64");
    assert.match((await banger(["image", "ls"])).stdout, /^busybox\s+debian-6\.1-cloud\s+amd64\s/m);
  });
});

describe("--json errors", () => {
  const { home, cleanup } = makeTempHome();
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("prints a failed operation as JSON on stdout, exit 1, nothing on stderr", async () => {
    const r = await runBanger(["vm", "show", "ghost", "--json"], { home });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, "");
    assert.deepEqual(JSON.parse(r.stdout), { error: { code: 1001, name: "NotFound", message: "vm ghost not found", hint: "see `banger vm ls`" } });
  });

  it("prints usage errors as JSON too, exit 2, with the usage line as the hint", async () => {
    for (const [args, message] of [
      [["vm", "ls", "--nope", "--json"], /^unknown option '--nope'$/],
      [["vm", "show", "../etc", "--json"], /^invalid vm name "\.\.\/etc"/],
      [["vm", "create", "--memory", "lots", "--json"], /^--memory: cannot read size "lots"$/],
      [["vm", "set", "x", "--memory", "32M", "--json"], /^--memory must be 64M\.\.256G, not "32M"$/],
      [["image", "show", "--json"], /^missing required argument 'name'$/],
    ] as const) {
      const r = await runBanger([...args], { home });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, "", args.join(" "));
      const { error } = JSON.parse(r.stdout) as { error: { code: number; name: string; message: string; hint?: string } };
      assert.equal(error.name, "InvalidArgument", args.join(" "));
      assert.equal(error.code, 1005);
      assert.match(error.message, message);
      if (args[1] === "ls" || args[0] === "image") assert.match(error.hint ?? "", new RegExp(`^usage: banger ${args[0]} ${args[1]} `));
    }
  });

  it("leaves errors as text without --json, and a --json after -- is the guest command's", async () => {
    const plain = await runBanger(["vm", "show", "ghost"], { home });
    assert.equal(plain.stdout, "");
    assert.equal(plain.stderr, "banger: vm ghost not found (see `banger vm ls`)\n");
    const guest = await runBanger(["vm", "exec", "ghost", "--", "echo", "--json"], { home });
    assert.equal(guest.code, 1);
    assert.equal(guest.stdout, "");
    assert.match(guest.stderr, /^banger: vm ghost not found/);
  });
});
