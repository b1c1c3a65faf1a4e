// The boot-time agent overlay: the daemon's agent appended to banger's own initramfs, cached
// per kernel and rebuilt when either part changes; other initramfs images are left as they are.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { runChecked } from "../util/exec.ts";
import { bootInitramfs, buildInitramfs, removeBootInitramfs } from "./initramfs.ts";

const { home, cleanup } = makeTempHome();
after(cleanup);

async function ourInitramfs(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "old-agent"), "old agent bytes");
  const out = join(dir, "initrd.img");
  await buildInitramfs({ agentPath: join(dir, "old-agent"), modules: [], outPath: out });
  return out;
}

test("appends the current agent to our initramfs, reuses it, and rebuilds when the agent changes", async () => {
  const dir = join(home, "k1");
  const initrd = await ourInitramfs(dir);
  const agent = join(dir, "agent");
  writeFileSync(agent, "new agent v1");
  const cache = join(home, "cache");
  const first = await bootInitramfs({ initrd, agentPath: agent, cacheDir: cache, kernelName: "k" });
  const bytes = readFileSync(first);
  const base = readFileSync(initrd);
  assert.ok(bytes.subarray(0, base.length).equals(base), "the kernel's initramfs comes first, unchanged");
  const overlay = join(dir, "overlay");
  mkdirSync(overlay);
  writeFileSync(join(dir, "overlay.cpio"), bytes.subarray(base.length));
  await runChecked(["sh", "-c", 'cd "$1" && cpio -i --quiet < "$2"', "sh", overlay, join(dir, "overlay.cpio")]);
  assert.deepEqual(readdirSync(overlay), ["init"]);
  assert.equal(readFileSync(join(overlay, "init"), "utf8"), "new agent v1");

  assert.equal(await bootInitramfs({ initrd, agentPath: agent, cacheDir: cache, kernelName: "k" }), first, "cached");
  writeFileSync(join(cache, "k-other-0123456789abcdef.img"), "another kernel's"); // "k-other" is not "k"
  writeFileSync(agent, "new agent v2, longer");
  const second = await bootInitramfs({ initrd, agentPath: agent, cacheDir: cache, kernelName: "k" });
  assert.notEqual(second, first);
  assert.ok(readFileSync(second).subarray(base.length).includes("new agent v2, longer"));
  assert.deepEqual(readdirSync(cache).sort(), ["k-other-0123456789abcdef.img", second.slice(cache.length + 1)].sort(), "the old image is gone, others stay");

  await removeBootInitramfs(cache, "k");
  assert.deepEqual(readdirSync(cache), ["k-other-0123456789abcdef.img"]);
});

test("boots an initramfs that is not ours as it is", async () => {
  const dir = join(home, "k2");
  mkdirSync(dir);
  const initrd = join(dir, "initrd.img");
  writeFileSync(initrd, Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0])); // a gzip'd distro initramfs
  writeFileSync(join(dir, "agent"), "agent");
  const cache = join(home, "cache2");
  assert.equal(await bootInitramfs({ initrd, agentPath: join(dir, "agent"), cacheDir: cache, kernelName: "d" }), initrd);
  assert.equal(existsSync(cache), false, "nothing cached");
});
