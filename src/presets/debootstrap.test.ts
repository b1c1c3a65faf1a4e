import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BangerError } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DebootstrapProgress, debootstrapArgv, parseDebootstrapLine, readPackageLists, requireRoot, staleDebs } from "./debootstrap.ts";

describe("debootstrap command line", () => {
  const argv = debootstrapArgv("/usr/sbin/debootstrap", "/c/work/x/root", { suite: "bookworm", mirror: "http://deb.debian.org/debian", packages: ["bash", "curl"], cacheDir: "/c/debootstrap" });

  it("runs minbase with the packages and the shared cache, in private mount and pid namespaces", () => {
    assert.deepEqual(argv.slice(0, 7), ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child=SIGKILL"]);
    assert.deepEqual(argv.slice(7), ["/usr/sbin/debootstrap", "--variant=minbase", "--include=bash,curl", "--cache-dir=/c/debootstrap", "bookworm", "/c/work/x/root", "http://deb.debian.org/debian"]);
  });

  it("refuses package names that could smuggle options", () => {
    assert.throws(() => debootstrapArgv("d", "/t", { suite: "bookworm", mirror: "m", packages: ["--foo"], cacheDir: "/c" }), /invalid package name/);
    assert.throws(() => debootstrapArgv("d", "/t", { suite: "bookworm", mirror: "m", packages: ["a,b"], cacheDir: "/c" }), /invalid package name/);
  });
});

describe("debootstrap progress", () => {
  it("reads the stage and package from its I: lines", () => {
    assert.deepEqual(parseDebootstrapLine("I: Retrieving libc6 2.36-9+deb12u10"), { stage: "downloading", item: "libc6" });
    assert.deepEqual(parseDebootstrapLine("I: Extracting bash..."), { stage: "extracting", item: "bash" });
    assert.deepEqual(parseDebootstrapLine("I: Configuring openssh-server..."), { stage: "configuring", item: "openssh-server" });
    assert.deepEqual(parseDebootstrapLine("I: Unpacking the base system..."), { stage: "installing" });
    assert.deepEqual(parseDebootstrapLine("I: Retrieving InRelease "), { stage: "downloading" });
    assert.deepEqual(parseDebootstrapLine("I: Checking Release signature"), { stage: "checking" });
    assert.deepEqual(parseDebootstrapLine("I: Validating bash 5.2.15-2+b7"), { stage: "downloading", item: "bash" }, "a cached .deb is only validated");
    assert.equal(parseDebootstrapLine("random noise"), undefined);
  });

  it("forwards stage changes at once and otherwise at most every interval", () => {
    const events: ProgressEvent[] = [];
    let t = 0;
    const p = new DebootstrapProgress(
      (e) => events.push(e),
      500,
      () => t,
    );
    p.line("I: Retrieving adduser 3.134"); // new stage: shown
    t = 100;
    p.line("I: Retrieving apt 2.6.1"); // throttled
    t = 700;
    p.line("I: Retrieving bash 5.2"); // interval passed: shown, with the count
    t = 750;
    p.line("I: Extracting adduser..."); // new stage: shown at once
    assert.deepEqual(events, [
      { phase: "debootstrap", done: 1, total: undefined, unit: "packages", message: "downloading adduser" },
      { phase: "debootstrap", done: 3, total: undefined, unit: "packages", message: "downloading bash" },
      { phase: "debootstrap", done: 1, total: undefined, unit: "packages", message: "extracting adduser" },
    ]);
  });

  it("counts each stage against its list of required or base packages once debootstrap has written them", async () => {
    const target = mkdtempSync(join(tmpdir(), "banger-debootstrap-"));
    try {
      const events: ProgressEvent[] = [];
      const p = new DebootstrapProgress(
        (e) => events.push(e),
        0,
        () => 0,
        () => readPackageLists(target),
      );
      p.line("I: Retrieving adduser 3.134");
      // What debootstrap's save_variables phase writes after the downloads.
      mkdirSync(join(target, "debootstrap"));
      writeFileSync(join(target, "debootstrap", "required"), "adduser apt base-files bash\n");
      writeFileSync(join(target, "debootstrap", "base"), "openssh-server ca-certificates\n");
      for (const line of [
        "I: Extracting adduser...",
        "I: Extracting base-files...",
        "I: Unpacking required packages...",
        "I: Unpacking adduser...",
        "I: Configuring required packages...",
        "I: Configuring adduser...",
        "I: Configuring apt...",
        "I: Configuring bash...",
        "I: Unpacking the base system...",
        "I: Unpacking openssh-server...",
        "I: Configuring the base system...",
        "I: Configuring ca-certificates...",
        "I: Configuring bash:amd64...",
        "I: Configuring openssh-server:amd64...",
      ])
        p.line(line);
      const shown = events.map((e) => `${e.message} ${e.done ?? "-"}/${e.total ?? "?"} ${e.unit ?? ""}`.trim());
      assert.deepEqual(shown, [
        "downloading adduser 1/? packages",
        "extracting adduser 1/4 packages",
        "extracting base-files 2/4 packages",
        "installing 0/4 packages",
        "installing adduser 1/4 packages",
        "configuring 0/4 packages",
        "configuring adduser 1/4 packages",
        "configuring apt 2/4 packages",
        "configuring bash 3/4 packages",
        "installing 0/2 packages",
        "installing openssh-server 1/2 packages",
        "configuring 0/2 packages",
        "configuring ca-certificates 1/2 packages",
        // bash's triggers run again while the base system is configured: not one of base's packages.
        "configuring bash:amd64 1/2 packages",
        "configuring openssh-server:amd64 2/2 packages",
      ]);
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });
});

describe("requireRoot", () => {
  it("refuses clearly when not root", (t) => {
    // This host runs tests as root; a non-root daemon cannot be had here, so getuid is stubbed.
    t.mock.method(process as unknown as { getuid: () => number }, "getuid", () => 1000);
    assert.throws(
      () => requireRoot("the debian presets"),
      (e: unknown) => e instanceof BangerError && /needs root/.test(e.message) && /run bangerd as root/.test(e.hint ?? ""),
    );
  });
});

describe("the shared .deb cache", () => {
  it("keeps only the newest download of each package and architecture", () => {
    const stale = staleDebs([
      { name: "curl_7.88.1-10+deb12u14_amd64.deb", mtimeMs: 1 },
      { name: "curl_7.88.1-10+deb12u15_amd64.deb", mtimeMs: 2 },
      { name: "curl_7.88.1-10+deb12u15_arm64.deb", mtimeMs: 1 },
      { name: "libc6_2.36-9+deb12u9_amd64.deb", mtimeMs: 5 },
      { name: "libc6_2.36-9+deb12u8_amd64.deb", mtimeMs: 3 },
      { name: "systemd_1%3a252_amd64.deb", mtimeMs: 1 },
      { name: "partial", mtimeMs: 0 },
    ]);
    assert.deepEqual(stale.sort(), ["curl_7.88.1-10+deb12u14_amd64.deb", "libc6_2.36-9+deb12u8_amd64.deb"]);
  });
});
