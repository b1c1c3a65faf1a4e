// defaults.get / defaults.set (the dashboard's "Set default") against a real store and config
// file under a temporary root: only installed names are taken, the config file changes as
// `banger config set` would change it, and other keys are kept.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { ensureDirs, loadConfig, resolvePaths, saveConfig } from "../config/index.ts";
import { openStore } from "../store/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { configDefaultsMethods } from "./config-defaults.ts";
import type { DaemonContext } from "./context.ts";

const bed = makeTempHome();
after(() => bed.cleanup());
let roots = 0;

function ctxWithOneOfEach(): DaemonContext {
  const paths = resolvePaths({ BANGER_HOME: join(bed.home, `root${++roots}`) });
  ensureDirs(paths);
  const store = openStore(paths.db);
  store.putKernel({ name: "k1", source: "test", kernelVersion: "6.1.0", distro: "debian", arch: "x86_64", vmlinuxSha256: "0".repeat(64), hasInitrd: false, modules: [], sizeBytes: 1 });
  store.putImage({ name: "img1", source: "test", digest: "sha256:x", kernelRef: "k1", distro: "", arch: "x86_64", sizeBytes: 3, config: {} });
  saveConfig(paths, { vmm: "qemu" });
  return { paths, store, config: () => loadConfig(paths) } as unknown as DaemonContext;
}

test("defaults.set makes an installed image and kernel the defaults, keeping other keys; defaults.get reads them", async () => {
  const ctx = ctxWithOneOfEach();
  const m = configDefaultsMethods(ctx);
  assert.deepEqual(await m["defaults.get"]!({}, {} as never), { image: null, kernel: null });
  assert.deepEqual(await m["defaults.set"]!({ image: "img1" }, {} as never), { image: "img1", kernel: null });
  assert.deepEqual(await m["defaults.set"]!({ kernel: "k1" }, {} as never), { image: "img1", kernel: "k1" });
  assert.deepEqual(loadConfig(ctx.paths), { vmm: "qemu", default_image: "img1", default_kernel: "k1" });
});

test("defaults.set refuses a name that is not installed, an invalid name and an empty call, changing nothing", async () => {
  const ctx = ctxWithOneOfEach();
  const m = configDefaultsMethods(ctx);
  const before = loadConfig(ctx.paths);
  const refused = (params: unknown, code: number, message: RegExp) =>
    assert.throws(
      () => m["defaults.set"]!(params, {} as never),
      (err: unknown) => err instanceof BangerError && err.code === code && message.test(err.message) && !err.message.includes("\n"),
    );
  refused({ image: "nosuch" }, ErrorCode.NotFound, /^image nosuch not found$/);
  refused({ kernel: "nosuch" }, ErrorCode.NotFound, /^kernel nosuch not found$/);
  refused({ image: "../etc" }, ErrorCode.InvalidArgument, /invalid image name/);
  refused({ image: 7 }, ErrorCode.InvalidParams, /"image" must be a string/);
  refused({}, ErrorCode.InvalidArgument, /nothing to set/);
  // A bad kernel refuses the whole call: the good image beside it is not set either.
  refused({ image: "img1", kernel: "nosuch" }, ErrorCode.NotFound, /kernel nosuch/);
  assert.deepEqual(loadConfig(ctx.paths), before);
});
