// Who may use the daemon (issue #14, finding 8). A member of the socket's group drives a daemon
// that runs as root, yet must never make it read a host file the member cannot read: paths
// the CLI names are read by the CLI, as the user, and the daemon opens no path a caller names.
// Runs as root: it creates a throwaway user and group (never a real `banger` group; the daemon
// takes the group's name from BANGER_GROUP) and removes them afterwards.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import tar from "tar-stream";
import { RpcClient } from "../src/rpc/index.ts";
import { BangerError } from "../src/util/errors.ts";
import { makeTempHome, mustRun, runBanger, sha256Hex, stopDaemon, testKernelDeb } from "./helpers.ts";

const asRoot = process.getuid?.() === 0;

interface KernelRow {
  name: string;
  vmlinuxSha256: string;
  source: string;
}

describe("a member of the socket's group", { skip: !asRoot && "needs root: it creates a throwaway user and group" }, () => {
  const tag = `bgt${randomBytes(4).toString("hex")}`;
  const group = `${tag}g`;
  const user = `${tag}u`;
  const { home, cleanup } = makeTempHome();
  // Root-only: 0700 directory, 0600 files. `open` is world-readable, `mine` belongs to the user.
  const secret = mkdtempSync(join(tmpdir(), "bgr-secret-"));
  const open = mkdtempSync(join(tmpdir(), "bgr-open-"));
  const mine = join(open, "mine");
  let secretVmlinuxSha = "";
  let openVmlinuxSha = "";

  /** Runs bin/banger as the member: their uid, their groups (the socket's among them). */
  const asMember = (args: string[]) => runBanger(args, { home, asUser: user, cwd: "/" });

  async function kernels(): Promise<KernelRow[]> {
    return JSON.parse((await mustRun(runBanger(["kernel", "list", "--json"], { home }))).stdout) as KernelRow[];
  }

  /** Refused with one line naming the path, and the daemon made nothing from it. */
  async function refused(args: string[], path: string): Promise<void> {
    const before = await kernels();
    const r = await asMember(args);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `banger: cannot read ${path}: permission denied\n`);
    assert.deepEqual(await kernels(), before, "no kernel was made");
    assert.ok(!(await kernels()).some((k) => k.vmlinuxSha256 === secretVmlinuxSha), "the secret kernel is in no kernel");
    assert.deepEqual(readdirSync(join(home, "tmp")), [], "nothing left in the daemon's scratch space");
  }

  before(async () => {
    execFileSync("groupadd", ["--system", group]);
    execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--groups", group, user]);
    // The daemon for this root, with the socket group-accessible; its directories traversable.
    await mustRun(runBanger(["daemon", "start"], { home, env: { BANGER_GROUP: group } }));
    chmodSync(home, 0o711);
    chmodSync(join(home, "run"), 0o711);
    // Root imports Debian's kernel package (as before the fix); its vmlinux seeds the fixtures.
    const deb = await testKernelDeb();
    await mustRun(runBanger(["kernel", "import", "--debian", "--deb", deb, "--name", "root-k", "--json"], { home }));
    const vmlinux = join(home, "kernels", "root-k", "vmlinux");
    for (const [dir, mode] of [
      [secret, 0o600],
      [open, 0o644],
    ] as const) {
      mkdirSync(join(dir, "kdir"));
      copyFileSync(vmlinux, join(dir, "kdir", "vmlinux"));
      appendFileSync(join(dir, "kdir", "vmlinux"), `marker ${dir}\n`); // still an ELF kernel, with its own sha256
      copyFileSync(deb, join(dir, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"));
      for (const f of ["kdir/vmlinux", "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"]) chmodSync(join(dir, f), mode);
    }
    chmodSync(open, 0o755);
    secretVmlinuxSha = sha256Hex(readFileSync(join(secret, "kdir", "vmlinux")));
    openVmlinuxSha = sha256Hex(readFileSync(join(open, "kdir", "vmlinux")));
    // The member's own directory, whose entries point at root-only files.
    mkdirSync(join(mine, "links"), { recursive: true });
    symlinkSync(join(secret, "kdir", "vmlinux"), join(mine, "links", "vmlinux"));
    mkdirSync(join(mine, "initrd"));
    copyFileSync(join(open, "kdir", "vmlinux"), join(mine, "initrd", "vmlinux"));
    symlinkSync(join(secret, "kdir", "vmlinux"), join(mine, "initrd", "initrd.img"));
    for (const p of [mine, join(mine, "links"), join(mine, "initrd"), join(mine, "initrd", "vmlinux")]) chownSync(p, Number(execFileSync("id", ["-u", user]).toString()), 0);
  });

  after(async () => {
    await stopDaemon(home);
    cleanup();
    rmSync(secret, { recursive: true, force: true });
    rmSync(open, { recursive: true, force: true });
    execFileSync("userdel", [user], { stdio: "ignore" });
    execFileSync("groupdel", [group], { stdio: "ignore" });
  });

  it("reaches the daemon through a socket of mode 0660 owned by the group", async () => {
    const st = statSync(join(home, "run", "bangerd.sock"));
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, Number(execFileSync("getent", ["group", group]).toString().split(":")[2]));
    const r = await asMember(["kernel", "list", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (JSON.parse(r.stdout) as KernelRow[]).map((k) => k.name),
      ["root-k"],
    );
  });

  it("cannot import a root-only .deb", () =>
    refused(["kernel", "import", join(secret, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"), "--name", "stolen-deb"], join(secret, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb")));

  it("cannot import a root-only .deb through --debian --deb", () =>
    refused(
      ["kernel", "import", "--debian", "--deb", join(secret, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"), "--name", "stolen-debian"],
      join(secret, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"),
    ));

  it("cannot import a root-only directory", () => refused(["kernel", "import", join(secret, "kdir"), "--name", "stolen-dir"], join(secret, "kdir")));

  it("cannot import /etc/shadow", () => refused(["kernel", "import", "/etc/shadow", "--name", "stolen-shadow"], "/etc/shadow"));

  it("cannot reach a root-only file through a symlink in their own directory", async () => {
    await refused(["kernel", "import", join(mine, "links"), "--name", "stolen-links"], join(mine, "links", "vmlinux"));
    await refused(["kernel", "import", join(mine, "initrd"), "--name", "stolen-initrd"], join(mine, "initrd", "initrd.img"));
  });

  it("imports a directory they can read", async () => {
    const r = await asMember(["kernel", "import", join(open, "kdir"), "--name", "member-dir", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const k = JSON.parse(r.stdout) as KernelRow;
    assert.equal(k.vmlinuxSha256, openVmlinuxSha);
    assert.equal(k.source, `import:${join(open, "kdir")}`);
  });

  it("imports a .deb they can read", async () => {
    const deb = join(open, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb");
    const r = await asMember(["kernel", "import", "--debian", "--deb", deb, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const k = JSON.parse(r.stdout) as KernelRow;
    assert.equal(k.name, "debian-6.1-cloud", "named from the package's file name, as before");
    assert.equal(k.vmlinuxSha256, (await kernels()).find((x) => x.name === "root-k")?.vmlinuxSha256);
    assert.equal(k.source, `import:${deb}`);
  });

  it("a client other than the CLI cannot name a host path to the daemon", async () => {
    const client = await RpcClient.connect(join(home, "run", "bangerd.sock"));
    try {
      for (const params of [{ source: join(secret, "kdir") }, { deb: join(secret, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"), debian: true }]) {
        await assert.rejects(client.call("kernel.import", { ...params, name: "stolen-rpc" }), (e: unknown) => {
          assert.ok(e instanceof BangerError);
          assert.match(e.message, /^kernel\.import reads no host path/);
          return true;
        });
      }
    } finally {
      client.close();
    }
    assert.ok(!(await kernels()).some((k) => k.name === "stolen-rpc"));
  });

  it("an upload that links to a host file is refused, and nothing is left", async () => {
    const pack = tar.pack();
    pack.entry({ name: "vmlinux", type: "symlink", linkname: join(secret, "kdir", "vmlinux") });
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    const client = await RpcClient.connect(join(home, "run", "bangerd.sock"));
    try {
      const call = client.start("kernel.import", { upload: "dir", label: "/hostile", name: "stolen-link" });
      call.input({ t: "in" }, bytes);
      call.input({ t: "eof" });
      await assert.rejects(call.result, /^BangerError: the kernel directory sent holds a symlink \("vmlinux"\)/);
    } finally {
      client.close();
    }
    assert.ok(!(await kernels()).some((k) => k.name === "stolen-link"));
    assert.deepEqual(readdirSync(join(home, "tmp")), []);
  });

  it("an upload cut off midway leaves nothing, and the name is free again", async () => {
    const deb = readFileSync(join(open, "linux-image-6.1.0-test-cloud-amd64_1_amd64.deb"));
    for (const kind of ["deb", "dir"] as const) {
      const client = await RpcClient.connect(join(home, "run", "bangerd.sock"));
      const call = client.start("kernel.import", { upload: kind, label: "/cut", name: "cut-off" });
      call.result.catch(() => undefined);
      call.input({ t: "in" }, deb.subarray(0, 4 * 1024 * 1024));
      await new Promise((r) => setTimeout(r, 500));
      client.close(); // the CLI died: no eof, no error
      for (let i = 0; i < 50 && readdirSync(join(home, "tmp")).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(readdirSync(join(home, "tmp")), [], `${kind}: nothing left in the daemon's scratch space`);
    }
    const r = await asMember(["kernel", "import", join(open, "kdir"), "--name", "cut-off", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await kernels()).some((k) => k.name === "cut-off"));
  });
});
