// The busybox preset's tree: busybox-static plus the host's dropbear and what it loads (so
// `ssh NAME.vm` has a server to start; test/e2e/ssh.test.ts logs in for real).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { extract } from "tar-stream";
import type { ProgressEvent } from "../util/progress.ts";
import { busyboxRootfsTar, BUSYBOX_PATH, DROPBEAR_PATH, type BusyboxOptions } from "./busybox.ts";

async function entries(o: BusyboxOptions): Promise<Map<string, { type: string; size: number }>> {
  const out = new Map<string, { type: string; size: number }>();
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on("entry", (h, stream, next) => {
      out.set(h.name.replace(/\/$/, ""), { type: h.type ?? "file", size: h.size ?? 0 });
      stream.on("end", next);
      stream.resume();
    });
    ex.on("finish", resolve);
    ex.on("error", reject);
  });
  (await busyboxRootfsTar(o)).pipe(ex);
  await done;
  return out;
}

const skip = (!existsSync(BUSYBOX_PATH) || !existsSync(DROPBEAR_PATH)) && "needs busybox-static and dropbear-bin on the host";

describe("busybox preset", { skip }, () => {
  it("carries the host's dropbear, every library it loads and /etc/dropbear", async () => {
    const tree = await entries({});
    assert.equal(tree.get("usr/sbin/dropbear")?.type, "file");
    assert.equal(tree.get("etc/dropbear")?.type, "directory");
    const loader = [...tree.keys()].filter((n) => /^lib(64)?\/.*ld-linux.*\.so/.test(n));
    assert.equal(loader.length, 1, "the dynamic loader");
    for (const lib of ["libc.so.6", "libtomcrypt.so.1", "libz.so.1"]) {
      const found = [...tree.entries()].find(([n]) => n.endsWith(`/${lib}`));
      assert.ok(found && found[1].type === "file" && found[1].size > 0, `${lib} as a regular file (symlinks resolved)`);
    }
    for (const name of tree.keys()) {
      const parent = name.split("/").slice(0, -1).join("/");
      if (parent) assert.equal(tree.get(parent)?.type, "directory", `${name}'s parent is in the tar`);
    }
  });

  it("without dropbear on the host it says the image gets no ssh server; null leaves it out quietly", async () => {
    const events: ProgressEvent[] = [];
    const missing = await entries({ dropbear: "/nonexistent/dropbear", progress: (e) => events.push(e) });
    assert.equal(missing.has("usr/sbin/dropbear"), false);
    assert.equal(missing.has("etc/dropbear"), false);
    assert.match(events.map((e) => e.message).join("\n"), /no \/nonexistent\/dropbear on this host: the image gets no ssh server \(apt-get install dropbear-bin\)/);
    const events2: ProgressEvent[] = [];
    const none = await entries({ dropbear: null, progress: (e) => events2.push(e) });
    assert.equal(none.has("usr/sbin/dropbear"), false);
    assert.deepEqual(events2, []);
  });
});
