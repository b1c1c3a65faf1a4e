// The TypeScript SDK against a real daemon (temporary root) and real VMs under QEMU: create,
// exec (output, exit code, cwd, env, stdin, timeout, bounds, a missing command), spawn
// (streams, stdin, kill), files both ways, fork and snapshot, stop and rm, typed errors. Then
// the package as a user gets it: `npm pack`, unpacked into a fresh project's node_modules,
// examples/sdk.ts typechecked there against the shipped declarations (strict, skipLibCheck
// off, and lines that must not typecheck) and run with plain node.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Banger, BangerError, ErrorCode, ExecTimeoutError, type Vm } from "../../src/sdk/index.ts";
import { REPO, makeTempHome, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const MiB = 1024 * 1024;

/** Rejects with a BangerError of `code`; returns it. */
async function bangerError(p: Promise<unknown>, code: number): Promise<BangerError> {
  const err = await p.then(
    () => assert.fail("expected a failure"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BangerError, `a BangerError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

describe("the TypeScript SDK (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let b: Banger;
  let vm: Vm;

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    b = await Banger.connect({ home });
    vm = await b.vms.create({ image: "busybox", name: "sdk1", memoryBytes: 256 * MiB });
  });
  after(async () => {
    b?.close();
    for (const v of JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout || "[]") as { name: string }[]) {
      await runBanger(["vm", "rm", "-f", v.name], { home, env });
    }
    await stopDaemon(home);
    cleanup();
  });

  it("creates a VM and lists it and the images", async () => {
    assert.equal(vm.name, "sdk1");
    assert.equal(vm.view.state, "running");
    assert.equal(vm.view.memoryBytes, 256 * MiB);
    assert.deepEqual(
      (await b.vms.list()).map((v) => [v.name, v.state]),
      [["sdk1", "running"]],
    );
    assert.ok((await b.images.list()).some((i) => i.name === "busybox"));
  });

  it("exec: a shell string or an argv, with cwd, env and stdin; a non-zero exit is a result", async () => {
    assert.deepEqual(await vm.exec("echo out; echo err >&2; exit 3"), { exitCode: 3, stdout: "out\n", stderr: "err\n", truncated: { stdout: 0, stderr: 0 } });
    const r = await vm.exec(["sh", "-c", 'pwd; echo "$X"; cat'], { cwd: "/tmp", env: { X: "an env value" }, stdin: "piped in" });
    assert.equal(r.stdout, "/tmp\nan env value\npiped in");
    const big = randomBytes(600 * 1024); // more than one input chunk (INPUT_CHUNK_BYTES)
    assert.equal((await vm.exec("wc -c", { stdin: big })).stdout.trim(), String(big.length));
  });

  it("exec: bounded output, a timeout that ends the command, a missing command as a typed error", async () => {
    const r = await vm.exec("head -c 5000 /dev/zero | tr '\\0' x; echo e >&2", { maxOutputBytes: 1000 });
    assert.equal(r.stdout, "x".repeat(1000));
    assert.deepEqual(r.truncated, { stdout: 4000, stderr: 0 });
    const started = Date.now();
    const err = await bangerError(vm.exec("echo begun; sleep 60", { timeoutMs: 1000 }), ErrorCode.Timeout);
    assert.ok(err instanceof ExecTimeoutError);
    assert.equal(err.stdout, "begun\n");
    assert.ok(Date.now() - started < 10_000, "it did not wait for the command");
    const ps = await vm.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; true");
    assert.doesNotMatch(ps.stdout, /sleep 60/);
    const missing = await bangerError(vm.exec(["no-such-command"]), ErrorCode.CommandNotFound);
    assert.match(missing.message, /no-such-command/);
  });

  it("spawn: output streams as it comes, stdin through a pipe, kill by signal", async () => {
    const proc = vm.spawn(["tr", "a-z", "A-Z"], { stdin: "pipe" });
    let out = "";
    proc.stdout.on("data", (c: Buffer) => (out += c));
    proc.stdin.write("first ");
    proc.stdin.end("second\n");
    assert.deepEqual(await proc.exited, { exitCode: 0 });
    assert.equal(out, "FIRST SECOND\n");

    const sleeper = vm.spawn("echo ready; exec sleep 60");
    await new Promise<void>((resolve) => sleeper.stdout.once("data", () => resolve()));
    sleeper.kill("SIGKILL");
    const ended = await sleeper.exited;
    assert.equal(ended.exitCode, 137);
    assert.match(ended.signal ?? "", /KILL/);
  });

  it("writes and reads files: text, binary, a head, bounds and errors", async () => {
    await vm.writeFile("/tmp/a/b/text.txt", "héllo\n", { mode: 0o600 });
    assert.equal(await vm.readTextFile("/tmp/a/b/text.txt"), "héllo\n");
    // Owned by the user commands run as (the image's dev user), so they may read it.
    const [uid, gid] = (await vm.exec("id -u; id -g")).stdout.trim().split("\n");
    assert.notEqual(uid, "0", "commands run as the image's dev user");
    const ls = await vm.exec(["ls", "-ln", "/tmp/a/b/text.txt"]);
    assert.match(ls.stdout, new RegExp(`^-rw------- +1 ${uid} +${gid} +7 `), JSON.stringify(ls));
    assert.equal((await vm.exec(["cat", "/tmp/a/b/text.txt"])).stdout, "héllo\n");
    await vm.writeFile("/root/owned-by-root", "x", { uid: 0, gid: 0 });
    assert.match((await vm.exec(["ls", "-ln", "/root/owned-by-root"], { user: "root" })).stdout, /^-rw-r--r-- +1 0 +0 +1 /);
    const bin = randomBytes(700 * 1024);
    assert.deepEqual(await vm.writeFile("/tmp/bin.dat", bin), { bytes: bin.length });
    assert.deepEqual(await vm.readFile("/tmp/bin.dat"), bin);
    const head = await vm.readFileHead("/tmp/bin.dat", 100);
    assert.deepEqual(head, { data: bin.subarray(0, 100), size: bin.length });
    await bangerError(vm.readFile("/tmp/bin.dat", { maxBytes: 1000 }), ErrorCode.ResourceExhausted);
    await bangerError(vm.readFile("/tmp/a"), ErrorCode.InvalidArgument);
    await bangerError(vm.writeFile("relative.txt", "x"), ErrorCode.InvalidArgument);
    const gone = await vm.readFile("/no/such/file").then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(gone instanceof BangerError, `a BangerError for a missing file, got ${String(gone)}`);
  });

  it("forks a running VM (the child has the parent's files) and takes a snapshot", async () => {
    await vm.writeFile("/root/before-fork", "parent state\n");
    const children = await vm.fork({ names: ["sdk1-child"] });
    assert.deepEqual(
      children.map((c) => c.name),
      ["sdk1-child"],
    );
    assert.equal(children.result.parent, "sdk1");
    assert.equal(await children[0]!.readTextFile("/root/before-fork"), "parent state\n");
    await children[0]!.rm({ force: true });
    const taken = await vm.snapshot("sdk-snap");
    assert.equal(taken.snapshot.name, "sdk-snap");
    assert.ok((await b.snapshots.list()).some((s) => s.name === "sdk-snap"));
    await b.snapshots.rm("sdk-snap");
    assert.ok(!(await b.snapshots.list()).some((s) => s.name === "sdk-snap"));
  });

  it("typed errors carry a code and a hint; stop and rm end the VM", async () => {
    const missing = await bangerError(b.vms.get("nope"), ErrorCode.NotFound);
    assert.match(missing.message, /nope/);
    await bangerError(b.vms.create({ name: "sdk1", image: "busybox" }), ErrorCode.AlreadyExists);
    const stopped = await vm.stop();
    assert.equal(stopped.state, "stopped");
    await vm.rm();
    assert.deepEqual(await b.vms.list(), []);
  });

  it("the packed package: examples/sdk.ts typechecks against its declarations and runs with node", async () => {
    const dir = join(home, "consumer");
    const pkg = join(dir, "node_modules", "banger");
    mkdirSync(pkg, { recursive: true });
    // What `npm install banger` would unpack: the tarball `npm pack` makes from package.json's "files".
    execFileSync("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
    execFileSync("tar", ["-xzf", join(dir, tgz), "--strip-components=1", "-C", pkg]);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    copyFileSync(join(REPO, "examples", "sdk.ts"), join(dir, "sdk.ts"));
    // Lines that must NOT typecheck: the declarations are real types, not `any`.
    writeFileSync(
      join(dir, "types.ts"),
      [
        'import { Banger, type ExecResult } from "banger";',
        "export async function wrong(b: Banger): Promise<void> {",
        '  const vm = await b.vms.get("x");',
        "  // @ts-expect-error exitCode is a number",
        '  const code: string = (await vm.exec("true")).exitCode;',
        "  // @ts-expect-error a command is a string or an argv",
        "  await vm.exec(42);",
        "  // @ts-expect-error memoryBytes, not memory",
        '  await b.vms.create({ memory: "1G" });',
        '  const r: ExecResult = await vm.exec(["true"], { cwd: "/", env: { A: "b" }, timeoutMs: 5 });',
        "  void code, r;",
        "}",
      ].join("\n"),
    );
    const tsconfig = {
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        skipLibCheck: false,
        outDir: "out",
        typeRoots: [join(REPO, "node_modules", "@types")],
        types: ["node"],
      },
      include: ["*.ts"],
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
    try {
      execFileSync(process.execPath, [join(REPO, "node_modules", "typescript", "bin", "tsc"), "-p", dir], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      assert.fail(`the example does not typecheck against the package:\n${(err as { stdout?: string }).stdout}`);
    }
    const out = execFileSync(process.execPath, [join(dir, "out", "sdk.js")], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, ...env, BANGER_HOME: home, BANGER_IMAGE: "busybox" },
      timeout: 180_000,
    });
    const lines = out.split("\n");
    assert.equal(lines[0], "exit 3: hello from Linux / to stderr");
    assert.equal(lines[1], "read back: written by the SDK");
    assert.equal(lines[2], "streamed: SHOUT THIS");
    assert.equal(lines[3], "tr exited 0");
    assert.match(lines[4]!, /^vms: [a-z0-9-]+ \(running\)$/);
    assert.match(lines[5]!, /^after rm: vm "?[a-z0-9-]+"? not found$/);
    assert.deepEqual(JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout), [], "the example removed its VM");
  });
});
