// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against a
// daemon started with BANGER_WEB=1 and a real VM under QEMU (TCG here): sign in with the
// one-time link, see the VM running, use its terminal, stop it live, pull a kernel from a
// local catalog with progress, pull an image, make it the default and remove it, remove a
// kernel, create a VM with the form, resume it after its VMM paused it, pause and resume it, remove it from the
// list, fit 1024/768/375px screens, and have unauthenticated and cross-site requests refused.
// Screenshots of every page go to .test-artifacts/webui/.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { qmpCommand } from "../../src/vmm/index.ts";
import { REPO, TEST_CACHE, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon, type CliResult } from "../helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = join(REPO, ".test-artifacts", "webui");
const VM = "web1";
/** Created from the dashboard's form. */
const VM2 = "web2";

describe("web dashboard (real VM, real browser)", { skip: existsSync(CHROMIUM) ? false : "needs Debian's chromium (apt-get install chromium)" }, () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let web: { url: string; loginUrl: string; token: string };
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let elsewhere: Server | undefined;
  const banger = (args: string[]) => runBanger(args, { home, env });
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    ({ env } = await prepareBootableHome(home, { BANGER_WEB: "1" }));
    // Independent set-up steps side by side: bundling the kernel is the slow one (zstd -19).
    await Promise.all([mustRun(banger(["vm", "create", "--name", VM, "--image", "busybox", "--memory", "256M"])), makeKernelCatalog(home, banger)]);
    web = JSON.parse((await mustRun(banger(["web", "--json", "--no-open"]))).stdout);
    profile = await mkdtemp(join(tmpdir(), "bgr-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    elsewhere?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    for (const vm of [VM, VM2]) await runBanger(["vm", "rm", "-f", vm], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("prints a loopback URL and a login link that works once", async () => {
    assert.match(web.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    await page.goto(web.loginUrl);
    assert.equal(new URL(page.url()).pathname, "/", "the login redirects to the dashboard");
    const again = await fetch(web.loginUrl, { redirect: "manual" });
    assert.equal(again.status, 401, "a used login code is refused");
  });

  it("lists the VM running, with CPU and memory from its agent", async () => {
    const row = page.locator(`tr[data-vm="${VM}"]`);
    await row.locator('[data-state="running"]').waitFor({ timeout: 15_000 });
    await page.waitForFunction((vm) => /MiB \/ \d/.test(document.querySelector(`tr[data-vm="${vm}"]`)?.textContent ?? ""), VM, { timeout: 15_000 });
    assert.match((await row.textContent()) ?? "", /busybox.*debian-6\.1-cloud/);
    // CPU use needs two samples of the guest's counters: it shows from the second push on.
    await page.waitForFunction((vm) => /\d+% of 1/.test(document.querySelector(`tr[data-vm="${vm}"]`)?.textContent ?? ""), VM, { timeout: 15_000 });
    await shot("vms");
  });

  it("opens a terminal in the VM and runs echo hello", async () => {
    await page.click(`tr[data-vm="${VM}"] a`);
    await page.locator('[data-action="terminal"]').click();
    await page.locator(".xterm-rows").waitFor();
    // Wait for the login shell's prompt (root@web1:~$ on busybox) before typing.
    await page.waitForFunction(() => [...document.querySelectorAll(".xterm-rows > div")].some((row) => /[#$]\s*$/.test(row.textContent ?? "")), undefined, { timeout: 20_000 });
    await page.locator(".term-box").click();
    await page.keyboard.type("echo hello\n");
    await page.waitForFunction(() => [...document.querySelectorAll(".xterm-rows > div")].some((row) => row.textContent?.trim() === "hello"), undefined, { timeout: 15_000 });
    // The console tail shows what `banger vm logs` shows.
    const logs = (await mustRun(banger(["vm", "logs", VM]))).stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "");
    assert.ok(logs.length > 0, "the VM wrote to its console");
    await page.waitForFunction((line) => (document.querySelector("[data-console]")?.textContent ?? "").includes(line), logs.at(-1)!, { timeout: 10_000 });
    await shot("vm");
  });

  it("lists a detached session and attaches to it in the terminal", async () => {
    await mustRun(banger(["session", "start", VM, "--name", "greeter", "--", "sh", "-c", "echo from-the-session; read line; echo got:$line; sleep 600"]));
    const attach = page.locator('[data-action="attach"]');
    await attach.waitFor({ timeout: 10_000 });
    await attach.click();
    const terminalHas = (line: string) => page.waitForFunction((l) => [...document.querySelectorAll(".xterm-rows > div")].some((row) => row.textContent?.trim() === l), line, { timeout: 15_000 });
    await terminalHas("from-the-session");
    await page.locator(".term-box").click();
    await page.keyboard.type("typed-in-browser\n");
    await terminalHas("got:typed-in-browser");
    assert.equal(await page.locator('[data-action="terminal"]').textContent(), "Close terminal");
    await shot("vm-session");
  });

  it("stops the VM from its page and shows the new state without a reload", async () => {
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await page.locator('h1 [data-action="stop"]').click();
    await page.locator('h1 [data-state="stopped"]').waitFor({ timeout: 30_000 });
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, "the page was not reloaded");
    const show = JSON.parse((await mustRun(banger(["vm", "show", VM, "--json"]))).stdout);
    assert.equal(show.state, "stopped");
    await page.goto(`${web.url}/#/vms`);
    await page.locator(`tr[data-vm="${VM}"] [data-state="stopped"]`).waitFor();
    await shot("vms-stopped");
  });

  it("pulls a kernel from the catalog and shows its progress up to 100%", async () => {
    await page.goto(`${web.url}/#/images`);
    const entry = page.locator('tr[data-entry="test-kernel"]');
    await entry.locator('[data-action="pull"]').click();
    const pull = entry.locator('[data-pull="test-kernel"][data-state="done"]');
    await pull.waitFor({ timeout: 60_000 });
    assert.equal(await pull.getAttribute("data-percent"), "100");
    assert.equal(await pull.getAttribute("data-reported"), "100", "the daemon's own download progress reached 100%");
    assert.ok(Number(await pull.getAttribute("data-events")) >= 2, "progress arrived live, not only the end");
    const kernels = JSON.parse((await mustRun(banger(["kernel", "list", "--json"]))).stdout) as { name: string }[];
    assert.ok(kernels.some((k) => k.name === "test-kernel"));
    // The page reloads its lists after a pull: the entry is now marked pulled.
    await entry.locator('[data-state="pulled"]').waitFor({ timeout: 10_000 });
    await shot("images");
  });

  it("shows recent operations with their state", async () => {
    await page.goto(`${web.url}/#/operations`);
    await page.waitForFunction(() => /kernel\.pull\s*test-kernel\s*succeeded/.test(document.querySelector("main")?.textContent ?? ""), undefined, { timeout: 10_000 });
    await shot("operations");
  });

  it("pulls an image under another name, makes it the default (config changes) and removes it", async () => {
    await page.goto(`${web.url}/#/images`);
    await page.locator('input[name="ref"]').fill("busybox");
    await page.locator('.by-ref input[name="name"]').fill("bb2");
    await page.locator('.by-ref button[type="submit"]').click();
    await page.locator('.by-ref .pull[data-state="done"]').waitFor({ timeout: 60_000 });
    const row = page.locator('tr[data-image="bb2"]');
    await row.locator('[data-action="default"]').click();
    await row.locator('[data-state="default"]').waitFor({ timeout: 10_000 });
    assert.equal((await mustRun(banger(["config", "get", "default_image"]))).stdout.trim(), "bb2 (config file)");
    await shot("images-default");
    page.once("dialog", (d) => void d.accept());
    await row.locator('[data-action="remove"]').click();
    await row.waitFor({ state: "detached", timeout: 10_000 });
    const images = JSON.parse((await mustRun(banger(["image", "list", "--json"]))).stdout) as { name: string }[];
    assert.deepEqual(
      images.map((i) => i.name),
      ["busybox"],
    );
    assert.equal((await mustRun(banger(["config", "get", "default_image"]))).stdout, "busybox (default: the only image)\n", "removing the default image unset it");
    await mustRun(banger(["config", "set", "default_image", "busybox"]));
  });

  it("removes an unused kernel; an image's kernel is refused with the daemon's reason", async () => {
    await page.goto(`${web.url}/#/images`);
    page.once("dialog", (d) => void d.accept());
    await page.locator('tr[data-kernel="test-kernel"] [data-action="remove"]').click();
    await page.locator('tr[data-kernel="test-kernel"]').waitFor({ state: "detached", timeout: 10_000 });
    const kernels = JSON.parse((await mustRun(banger(["kernel", "list", "--json"]))).stdout) as { name: string }[];
    assert.ok(!kernels.some((k) => k.name === "test-kernel"));
    page.once("dialog", (d) => void d.accept());
    await page.locator('tr[data-kernel="debian-6.1-cloud"] [data-action="remove"]').click();
    const toast = page.locator(".toast");
    await toast.waitFor({ timeout: 10_000 });
    assert.match((await toast.textContent()) ?? "", /kernel debian-6\.1-cloud.*used/);
    assert.ok((await mustRun(banger(["kernel", "show", "debian-6.1-cloud", "--json"]))).stdout.includes("debian-6.1-cloud"));
  });

  it("creates a VM from an image with the form: bad input shows the daemon's line and hint, a good one boots", async () => {
    await page.goto(`${web.url}/#/vms`);
    const form = page.locator("form.create");
    await form.locator('select[name="image"] option[value="busybox"]').waitFor({ state: "attached" });
    assert.equal(await form.locator('select[name="image"]').inputValue(), "busybox", "the default image is preselected");
    await form.locator('input[name="name"]').fill(VM2);
    await form.locator('input[name="memory"]').fill("lots");
    await form.locator('[data-action="create"]').click();
    const status = page.locator("[data-create]");
    await page.locator('[data-create][data-state="refused"]').waitFor({ timeout: 10_000 });
    assert.match((await status.textContent()) ?? "", /memory: cannot read size "lots"use e\.g\. 512M/);
    await form.locator('input[name="memory"]').fill("256M");
    await form.locator('[data-action="create"]').click();
    await page.locator('[data-create][data-state="done"]').waitFor({ timeout: 180_000 });
    assert.ok(Number(await status.getAttribute("data-events")) >= 2, "the create's progress arrived live");
    await page.locator(`tr[data-vm="${VM2}"] [data-state="running"]`).waitFor({ timeout: 15_000 });
    const show = JSON.parse((await mustRun(banger(["vm", "show", VM2, "--json"]))).stdout) as { state: string; image: string; memoryBytes: number };
    assert.equal(show.state, "running");
    assert.equal(show.image, "busybox");
    assert.equal(show.memoryBytes, 256 * 1024 ** 2, "the form's memory reached the daemon");
    await shot("vms-created");
  });

  it("resumes a VM its VMM paused, from the list", async () => {
    const { id } = JSON.parse((await mustRun(banger(["vm", "show", VM2, "--json"]))).stdout) as { id: string };
    // QEMU's own "stop": the VMM pauses the guest, as it does on a full host disk.
    await qmpCommand(join(home, "run", "vms", id, "qmp.sock"), "stop");
    const row = page.locator(`tr[data-vm="${VM2}"]`);
    await row.locator('[data-state="paused"]').waitFor({ timeout: 15_000 });
    await row.locator('[data-action="resume"]').click();
    await row.locator('[data-state="running"]').waitFor({ timeout: 15_000 });
    const { status } = await qmpCommand<{ status: string }>(join(home, "run", "vms", id, "qmp.sock"), "query-status");
    assert.equal(status, "running");
    assert.match((await mustRun(banger(["vm", "exec", VM2, "--", "echo", "alive"]))).stdout, /alive/);
  });

  it("pauses a running VM from the list and resumes it: CPUs stopped, memory kept", async () => {
    const { id } = JSON.parse((await mustRun(banger(["vm", "show", VM2, "--json"]))).stdout) as { id: string };
    const qmp = join(home, "run", "vms", id, "qmp.sock");
    const row = page.locator(`tr[data-vm="${VM2}"]`);
    await row.locator('[data-action="pause"]').click();
    await row.locator('[data-state="paused"]').waitFor({ timeout: 15_000 });
    assert.equal((await qmpCommand<{ status: string }>(qmp, "query-status")).status, "paused");
    const shown = JSON.parse((await mustRun(banger(["vm", "show", VM2, "--json"]))).stdout) as { state: string; stateReason: string };
    assert.deepEqual([shown.state, shown.stateReason], ["paused", "paused by the user"]);
    assert.equal(await row.locator('[data-action="pause"]').count(), 0, "a paused VM offers resume, not pause");
    await row.locator('[data-action="resume"]').click();
    await row.locator('[data-state="running"]').waitFor({ timeout: 15_000 });
    assert.equal((await qmpCommand<{ status: string }>(qmp, "query-status")).status, "running");
    assert.match((await mustRun(banger(["vm", "exec", VM2, "--", "echo", "alive"]))).stdout, /alive/);
  });

  it("removes a running VM from the list after a confirm", async () => {
    const row = page.locator(`tr[data-vm="${VM2}"]`);
    let question = "";
    page.once("dialog", (d) => {
      question = d.message();
      void d.dismiss();
    });
    await row.locator('[data-action="remove"]').click();
    assert.match(question, new RegExp(`Remove vm ${VM2}\\? It is running`));
    assert.equal(JSON.parse((await mustRun(banger(["vm", "show", VM2, "--json"]))).stdout).state, "running", "a dismissed confirm removes nothing");
    page.once("dialog", (d) => void d.accept());
    await row.locator('[data-action="remove"]').click();
    await row.waitFor({ state: "detached", timeout: 60_000 });
    const vms = JSON.parse((await mustRun(banger(["vm", "list", "--json"]))).stdout) as { name: string }[];
    assert.deepEqual(
      vms.map((v) => v.name),
      [VM],
    );
  });

  it("fits 1024, 768 and 375px-wide screens: nothing scrolls sideways, no button or badge wraps", async () => {
    try {
      for (const width of [1024, 768, 375]) {
        await page.setViewportSize({ width, height: 800 });
        for (const [hash, ready] of [
          ["#/vms", `tr[data-vm="${VM}"]`],
          ["#/images", 'tr[data-image="busybox"]'],
          [`#/vm/${VM}`, "[data-console]"],
          ["#/operations", "tbody tr"],
        ] as const) {
          await page.goto(`${web.url}/${hash}`);
          await page.locator(ready).first().waitFor({ timeout: 10_000 });
          await page.waitForTimeout(500); // the lists fill in after their calls answer
          const seen = await page.evaluate(() => ({
            page: document.documentElement.scrollWidth,
            view: window.innerWidth,
            wide: [...document.querySelectorAll("section.card, header, main")].filter((el) => el.scrollWidth > el.clientWidth + 1).map((el) => el.className || el.tagName),
            // Buttons and badges hold one line of text: more lines means a label wrapped.
            wrapped: [...document.querySelectorAll<HTMLElement>("button, .badge")]
              .filter((el) => {
                const cs = getComputedStyle(el);
                const line = cs.lineHeight === "normal" ? 1.2 * parseFloat(cs.fontSize) : parseFloat(cs.lineHeight);
                return el.offsetParent !== null && (el.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom)) / line > 1.5;
              })
              .map((el) => el.textContent),
          }));
          assert.equal(seen.view, width);
          assert.ok(seen.page <= seen.view, `${width}px ${hash}: the page is ${seen.page}px wide`);
          assert.deepEqual(seen.wide, [], `${width}px ${hash}: these scroll sideways`);
          assert.deepEqual(seen.wrapped, [], `${width}px ${hash}: these wrap`);
          await shot(`w${width}-${hash.replace(/\W+/g, "-").replace(/^-|-$/g, "")}`);
        }
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 860 });
    }
  });

  it("refuses requests without the token (401) and serves the API to the token", async () => {
    const anonymous = await fetch(`${web.url}/api/vms`);
    assert.equal(anonymous.status, 401);
    assert.equal((await fetch(`${web.url}/api/vms/${VM}/start`, { method: "POST" })).status, 401);
    assert.equal((await fetch(`${web.url}/`)).status, 401);
    const wrong = await fetch(`${web.url}/api/vms`, { headers: { Authorization: "Bearer not-the-token" } });
    assert.equal(wrong.status, 401);
    const auth = { Authorization: `Bearer ${web.token}` };
    const vms = (await (await fetch(`${web.url}/api/vms`, { headers: auth })).json()) as { name: string }[];
    assert.deepEqual(
      vms.map((v) => v.name),
      [VM],
    );
    const doc = (await (await fetch(`${web.url}/api/openapi.json`, { headers: auth })).json()) as { openapi: string; paths: object };
    assert.match(doc.openapi, /^3\./);
    assert.ok("/api/vms/{name}/stop" in doc.paths);
  });

  it("refuses cross-site and CSRF-less POSTs (403) even with the session cookie", async () => {
    const stop = `${web.url}/api/vms/${VM}/start`;
    const noCsrf = await page.request.post(stop, { headers: { "Content-Type": "application/json" }, data: {} });
    assert.equal(noCsrf.status(), 403, "the cookie alone is not enough");
    const foreign = await page.request.post(stop, { headers: { Origin: "http://evil.example" } });
    assert.equal(foreign.status(), 403);
    // A real page from another origin (another port on this host: same site, other origin) posting a form.
    elsewhere = createServer((_req, res) => {
      res.setHeader("Content-Type", "text/html");
      res.end(`<form method="POST" action="${stop}"></form><script>document.forms[0].submit()</script>`);
    });
    await new Promise<void>((resolve) => elsewhere!.listen(0, "127.0.0.1", resolve));
    const port = (elsewhere.address() as { port: number }).port;
    const answer = page.waitForResponse((r) => r.url() === stop);
    await page.goto(`http://127.0.0.1:${port}/`);
    assert.equal((await answer).status(), 403);
    const show = JSON.parse((await mustRun(banger(["vm", "show", VM, "--json"]))).stdout);
    assert.equal(show.state, "stopped", "the forged request did nothing");
  });
});

/**
 * A kernel catalog with one bundle made by `internal make-kernel-bundle` from the imported
 * kernel, set as kernel_catalog. The bundle is kept in the test cache by the kernel's hash:
 * compressing 60 MB at zstd -19 takes half a minute on two cores.
 */
async function makeKernelCatalog(home: string, banger: (args: string[]) => Promise<CliResult>): Promise<void> {
  const kernelDir = join(home, "kernels", "debian-6.1-cloud");
  const { vmlinux_sha256: sha } = JSON.parse(await readFile(join(kernelDir, "manifest.json"), "utf8")) as { vmlinux_sha256: string };
  // -v2: made.json's keys became camelCase (sizeBytes, kernelVersion); older caches have snake_case.
  const cached = join(TEST_CACHE, "webui-kernel-bundle-v2", sha.slice(0, 16));
  if (!existsSync(join(cached, "made.json"))) {
    await mkdir(dirname(cached), { recursive: true });
    const work = await mkdtemp(`${cached}.tmp-`);
    try {
      const made = await mustRun(banger(["internal", "make-kernel-bundle", kernelDir, "--name", "test-kernel", "--out", work, "--json"]));
      await writeFile(join(work, "made.json"), made.stdout);
      await rename(work, cached).catch(() => undefined); // another run may have cached it meanwhile
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const made = JSON.parse(await readFile(join(cached, "made.json"), "utf8")) as { path: string; sha256: string; sizeBytes: number; kernelVersion: string };
  const dir = join(home, "kernel-catalog");
  await mkdir(dir, { recursive: true });
  await copyFile(join(cached, basename(made.path)), join(dir, "test-kernel.tar.zst"));
  const entry = {
    name: "test-kernel",
    arch: "x86_64",
    kernel_version: made.kernelVersion,
    tarball_url: "test-kernel.tar.zst",
    tarball_sha256: made.sha256,
    size_bytes: made.sizeBytes,
    description: "test kernel bundle",
  };
  await writeFile(join(dir, "catalog.json"), JSON.stringify({ version: 1, entries: [entry] }));
  await mustRun(banger(["config", "set", "kernel_catalog", join(dir, "catalog.json")]));
}
