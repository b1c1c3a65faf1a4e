import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { ensureDirs, resolvePaths } from "../config/index.ts";
import { which } from "./exec.ts";
import { findLeftovers, sweepLeftovers } from "./scratch.ts";

const bed = makeTempHome();
after(() => bed.cleanup());

test("the sweep removes banger's stale staging and temp names, and nothing else", async () => {
  const paths = resolvePaths({ BANGER_HOME: bed.home });
  ensureDirs(paths);
  const dead = 2 ** 22 + 12345; // above pid_max's default: no such process
  const stale = [
    join(paths.kernelsDir, ".staging-k-AbC123"),
    join(paths.imagesDir, ".replaced-img"),
    join(paths.tmpDir, "image-img-x1Y2z3"),
    join(paths.tmpDir, "kernel-upload-Q9w8e7"),
    join(paths.tmpDir, `bundle-0123456789abcdef-${dead}-0a1b2c3d.partial`),
    join(paths.root, `config.json.tmp-${dead}`),
  ];
  const kept = [
    join(paths.kernelsDir, "k"), // a kernel
    join(paths.imagesDir, "staging-img"), // an image whose name merely looks like one
    join(paths.tmpDir, "notes.txt"), // not a name banger makes
    join(paths.root, `config.json.tmp-${process.pid}`), // a live process's
    join(paths.root, ".reflink-probe-AbC123"), // another process's, still young
  ];
  for (const p of [...stale, ...kept]) p.endsWith("txt") || p.includes(".tmp-") || p.includes(".partial") ? writeFileSync(p, "x".repeat(10000)) : mkdirSync(p);
  writeFileSync(join(paths.tmpDir, "image-img-x1Y2z3", "rootfs.ext4"), Buffer.alloc(64 * 1024, 1));
  assert.deepEqual((await findLeftovers(paths)).map((l) => l.path).sort(), [...stale].sort());
  const swept = await sweepLeftovers(paths, (pid) => pid === process.pid);
  assert.ok(swept.bytes >= 64 * 1024, `counts the space held: ${swept.bytes}`);
  for (const p of stale) assert.equal(existsSync(p), false, p);
  for (const p of kept) assert.equal(existsSync(p), true, p);
});

test("a QEMU RAM file on the tmpfs is a leftover once no process maps it", async (t) => {
  if (!which("python3")) return t.skip("python3 maps the file (Node cannot mmap)");
  const paths = resolvePaths({ BANGER_HOME: bed.home });
  mkdirSync(paths.memoryDir, { recursive: true });
  const inUse = join(paths.memoryDir, "vm1.mem");
  const orphan = join(paths.memoryDir, "vm2.mem");
  for (const p of [inUse, orphan]) writeFileSync(p, Buffer.alloc(8192, 1));
  // A process mapping it, as a running QEMU maps its guest RAM.
  const mapper = spawn("python3", ["-c", "import mmap,sys,time; f=open(sys.argv[1],'r+b'); m=mmap.mmap(f.fileno(),0); print('mapped',flush=True); time.sleep(120)", inUse], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await once(mapper.stdout, "data");
    assert.deepEqual(
      (await findLeftovers(paths)).map((l) => l.path).filter((p) => p.startsWith(paths.memoryDir)),
      [orphan],
    );
    await sweepLeftovers(paths);
    assert.equal(existsSync(orphan), false);
    assert.equal(existsSync(inUse), true, "a mapped RAM file stays");
  } finally {
    mapper.kill("SIGKILL");
    await once(mapper, "exit");
    rmSync(paths.memoryDir, { recursive: true, force: true });
  }
});
