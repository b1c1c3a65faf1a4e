// banger's TypeScript SDK in a few lines: a VM, a command, a file, gone again.
//   npm install banger        (the daemon starts by itself, as for the CLI)
//   BANGER_IMAGE=busybox npx tsx sdk.ts
import { Banger, BangerError } from "banger";

const b = await Banger.connect(); // $BANGER_HOME, else the system's root; bangerd starts if needed
try {
  const vm = await b.vms.create({ image: process.env.BANGER_IMAGE, memoryBytes: 256 * 1024 * 1024 });
  try {
    const r = await vm.exec("echo hello from $(uname -s); echo to stderr >&2; exit 3");
    console.log(`exit ${r.exitCode}: ${r.stdout.trim()} / ${r.stderr.trim()}`);

    await vm.writeFile("/tmp/notes/hello.txt", "written by the SDK\n");
    console.log(`read back: ${(await vm.readTextFile("/tmp/notes/hello.txt")).trim()}`);

    // Streaming: output as it comes, stdin from this program.
    const proc = vm.spawn(["tr", "a-z", "A-Z"], { stdin: "pipe" });
    proc.stdout.on("data", (chunk: Buffer) => process.stdout.write(`streamed: ${chunk}`));
    proc.stdin.end("shout this\n");
    console.log(`tr exited ${(await proc.exited).exitCode}`);

    console.log(`vms: ${(await b.vms.list()).map((v) => `${v.name} (${v.state})`).join(", ")}`);
  } finally {
    await vm.rm({ force: true });
  }
  await b.vms.get(vm.name).catch((err: unknown) => {
    if (err instanceof BangerError) console.log(`after rm: ${err.message}`);
  });
} finally {
  b.close();
}
