import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { DEBIAN_DEV_PACKAGES, DEBIAN_PACKAGES, DEV_USER, accountLines, appendAccount, daysSinceEpoch, hostnameFile, hostsFile, localeFile, sudoersFile } from "./debian-files.ts";

const PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

describe("the dev user's account lines", () => {
  const lines = accountLines(DEV_USER, daysSinceEpoch(new Date("2026-01-02T12:00:00Z")));

  it("passwd: uid/gid 1000, home /home/dev, bash", () => {
    assert.equal(lines.passwd, "dev:x:1000:1000:dev:/home/dev:/bin/bash");
    assert.equal(lines.group, "dev:x:1000:");
  });

  it("shadow has no password (not locked) and a real change date", () => {
    assert.equal(lines.shadow, "dev:*:20455:0:99999:7:::");
    assert.equal(lines.gshadow, "dev:!::");
  });

  it("is appended after the existing entries, with a newline added when missing", () => {
    assert.equal(appendAccount(PASSWD, lines.passwd, "passwd"), `${PASSWD}${lines.passwd}\n`);
    assert.equal(appendAccount(PASSWD.trimEnd(), lines.passwd, "passwd"), `${PASSWD}${lines.passwd}\n`);
  });

  it("refuses a taken name or uid instead of writing a duplicate", () => {
    const refuses = (text: string, re: RegExp) =>
      assert.throws(
        () => appendAccount(text, lines.passwd, "passwd"),
        (e: unknown) => e instanceof BangerError && e.code === ErrorCode.InvalidArgument && re.test(e.message),
      );
    refuses(`${PASSWD}dev:x:1001:1001::/home/dev:/bin/sh\n`, /named "dev"/);
    refuses(`${PASSWD}alice:x:1000:1000::/home/alice:/bin/sh\n`, /id 1000 \(alice\)/);
    // shadow has no ids: a date that happens to be 1000 is no clash.
    assert.doesNotThrow(() => appendAccount("root:*:1000:0:99999:7:::\n", lines.shadow, "shadow"));
  });
});

describe("generated config files", () => {
  it("sudoers.d/dev grants passwordless sudo to dev only", () => {
    const text = sudoersFile("dev");
    const rules = text.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.deepEqual(rules, ["dev ALL=(ALL:ALL) NOPASSWD: ALL"]);
    assert.ok(text.endsWith("\n"), "sudo wants a final newline");
    assert.throws(() => sudoersFile("dev ALL=(ALL) ALL\n#"), /invalid user name/);
  });

  it("hosts maps localhost and the hostname; hostname is validated", () => {
    const hosts = hostsFile("debian");
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(hosts, /^127\.0\.1\.1\tdebian$/m);
    assert.match(hosts, /^::1\t+localhost ip6-localhost ip6-loopback$/m);
    assert.equal(hostnameFile("debian"), "debian\n");
    assert.throws(() => hostnameFile("bad name"), /invalid hostname/);
    assert.throws(() => hostnameFile("-x"), /invalid hostname/);
  });

  it("locale is C.UTF-8", () => assert.equal(localeFile(), "LANG=C.UTF-8\n"));
});

describe("package lists", () => {
  it("debian has what the issue asks for; debian-dev is a superset with the toolchain", () => {
    for (const p of ["bash", "coreutils", "git", "ca-certificates", "curl", "openssh-server", "sudo", "iproute2", "procps", "less"]) {
      assert.ok((DEBIAN_PACKAGES as readonly string[]).includes(p), p);
    }
    for (const p of DEBIAN_PACKAGES) assert.ok((DEBIAN_DEV_PACKAGES as readonly string[]).includes(p), p);
    for (const p of ["build-essential", "python3", "nodejs", "make", "pkg-config"]) assert.ok((DEBIAN_DEV_PACKAGES as readonly string[]).includes(p), p);
  });
});
