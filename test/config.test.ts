// `banger config` as users meet it: values checked by type and kernel/image names against
// what exists, the value in effect with its source (default, config file, env var), a note
// when a change needs a daemon restart, and the dashboard started and stopped at once.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { makeTempHome, runBanger, stopDaemon } from "./helpers.ts";
import { CONFIG_KEYS } from "../src/config/index.ts";

describe("config", () => {
  const { home, cleanup } = makeTempHome();
  // BANGER_WEB_PORT empty: the file and the defaults speak (runBanger sets it to 0 otherwise).
  const banger = (args: string[], env: NodeJS.ProcessEnv = { BANGER_WEB_PORT: "" }) => runBanger(args, { home, env });
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("refuses a default kernel or image that does not exist, naming what to do", async () => {
    const image = await banger(["config", "set", "default_image", "nosuch"]);
    assert.equal(image.code, 2);
    assert.equal(image.stderr, "banger: default_image: no image nosuch (there are no images yet: banger image build --preset busybox)\n");
    const kernel = await banger(["config", "set", "default_kernel", "nosuch"]);
    assert.equal(kernel.code, 2);
    assert.equal(kernel.stderr, "banger: default_kernel: no kernel nosuch (there are no kernels yet: banger kernel import --debian)\n");
    assert.deepEqual(JSON.parse((await banger(["config", "get", "default_image", "--json"])).stdout), { key: "default_image", value: null, source: "default" });
  });

  it("refuses unknown keys and values of the wrong type", async () => {
    for (const [args, message] of [
      [["colour", "blue"], /^banger: unknown config key "colour" \(known keys: default_kernel, /],
      [["web.port", "http"], /^banger: web\.port takes a port number from 1 to 65535\n$/],
      [["web.enabled", "yes"], /^banger: web\.enabled takes true or false\n$/],
      [["min_free_bytes", "lots"], /^banger: min_free_bytes: cannot read size "lots"/],
      [["network.tap_pool", "-1"], /^banger: network\.tap_pool takes a whole number from 0 to 64\n$/],
      [["network.subnet", "10.0.0.0/8"], /^banger: .*10\.0\.0\.0\/8/],
      [["vmm", "xen"], /^banger: vmm takes qemu or firecracker\n$/],
    ] as const) {
      const r = await banger(["config", "set", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.deepEqual(
      JSON.parse((await banger(["config", "get", "--json"])).stdout).filter((e: { source: string }) => e.source === "config"),
      [],
      "nothing was written",
    );
  });

  it("prints the value in effect and its source: default, config file, env var", async () => {
    assert.equal((await banger(["config", "get", "web.port"])).stdout, "2264 (default)\n", "the dashboard's port is fixed by default");
    assert.equal((await banger(["config", "set", "min_free_bytes", "2G"])).code, 0);
    assert.equal((await banger(["config", "get", "min_free_bytes"])).stdout, "2.0 GiB (config file)\n");
    assert.deepEqual(JSON.parse((await banger(["config", "get", "min_free_bytes", "--json"])).stdout), { key: "min_free_bytes", value: 2 * 1024 ** 3, source: "config" });
    assert.deepEqual(JSON.parse((await banger(["config", "get", "vmm", "--json"], { BANGER_VMM: "firecracker" })).stdout), { key: "vmm", value: "firecracker", source: "env", env: "BANGER_VMM" });
    const all = await banger(["config", "get"]);
    assert.match(all.stdout, /^KEY +VALUE +SOURCE$/m);
    assert.match(all.stdout, /^min_free_bytes +2\.0 GiB +config file$/m);
    assert.match(all.stdout, /^default_image +- +default: the only image, when there is one$/m);
    assert.equal((await banger(["config", "get", "default_image"])).stdout, "unset (default: the only image, when there is one)\n");
    assert.equal((await banger(["config", "get", "insecure_registries"])).stdout, "none (default)\n");
    const json = JSON.parse((await banger(["config", "get", "--json"])).stdout) as { key: string; source: string }[];
    assert.deepEqual(json.map((e) => e.key).sort(), Object.keys(CONFIG_KEYS).sort(), "every key, once");
    assert.deepEqual(
      json.find((e) => e.key === "web.address"),
      { key: "web.address", value: "127.0.0.1", source: "default" },
    );
    assert.equal((await banger(["config", "unset", "min_free_bytes"])).code, 0);
    assert.equal((await banger(["config", "get", "min_free_bytes"])).stdout, "1.0 GiB (default)\n");
  });

  it("says a network change applies when the running daemon restarts", async () => {
    assert.equal((await banger(["daemon", "start"])).code, 0);
    const r = await banger(["config", "set", "network.tap_pool", "3"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "banger: network.tap_pool applies when the daemon restarts: banger daemon stop (running VMs keep running; the next command starts it)\n");
    const live = await banger(["config", "set", "vmm", "qemu"]);
    assert.deepEqual([live.code, live.stdout, live.stderr], [0, "", ""], "read per operation: nothing to say");
  });

  it("starts and stops the dashboard of the running daemon without a restart", async () => {
    // The daemon was started with BANGER_WEB_PORT empty: it would listen on the fixed port, so name a free one.
    const port = await freePort();
    assert.equal((await banger(["config", "set", "web.port", String(port)])).code, 0);
    const on = await banger(["config", "set", "web.enabled", "true"]);
    assert.equal(on.code, 0, on.stderr);
    assert.equal(on.stdout, `dashboard on http://127.0.0.1:${port} (banger web for a login link)\n`);
    const info = JSON.parse((await banger(["web", "--json", "--no-open"])).stdout) as { url: string };
    assert.equal(info.url, `http://127.0.0.1:${port}`);
    assert.equal((await fetch(`${info.url}/api/vms`)).status, 401, "it answers (and wants a token)");
    const off = await banger(["config", "set", "web.enabled", "false"]);
    assert.equal(off.stdout, "dashboard off\n");
    await assert.rejects(fetch(`${info.url}/api/vms`), "nothing listens any more");
    const web = await banger(["web", "--no-open"]);
    assert.equal(web.code, 1);
    assert.match(web.stderr, /the dashboard is off \(turn it on: banger config set web\.enabled true\)/);
  });
});

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
