import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { detectMirror, parseDeb822Sources, parseOneLineSources, pickMirror } from "./mirror.ts";

// As Debian 12's installer and cloud images write it.
const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
`;

const ONE_LINE = `# deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://local.mirror/debian bookworm main contrib
deb-src http://src.example/debian bookworm main
`;

describe("apt sources parsing", () => {
  it("deb822: the main archive for the suite, not the security archive", () => {
    const sources = parseDeb822Sources(DEB822);
    assert.equal(sources.length, 2);
    assert.equal(pickMirror(sources, "bookworm"), "http://mirror.example.org/debian");
  });

  it("one-line: options in brackets and comments are skipped; deb-src ignored", () => {
    assert.equal(pickMirror(parseOneLineSources(ONE_LINE), "bookworm"), "https://local.mirror/debian");
    assert.equal(pickMirror(parseOneLineSources("deb-src http://src.example/debian bookworm main\n"), "bookworm"), undefined);
  });

  it("disabled stanzas, other suites and non-http URIs are not picked", () => {
    assert.equal(pickMirror(parseDeb822Sources("Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n"), "bookworm"), undefined);
    assert.equal(pickMirror(parseOneLineSources("deb http://x.example/ubuntu jammy main\n"), "bookworm"), undefined);
    assert.equal(pickMirror(parseOneLineSources("deb file:/srv/debian bookworm main\n"), "bookworm"), undefined);
  });
});

describe("detectMirror", () => {
  const dir = mkdtempSync(join(tmpdir(), "bgr-apt-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads sources.list.d/*.sources, ignores files apt ignores, falls back to deb.debian.org", async () => {
    const apt = join(dir, "apt");
    mkdirSync(join(apt, "sources.list.d"), { recursive: true });
    assert.equal(await detectMirror("bookworm", apt), "http://deb.debian.org/debian");
    writeFileSync(join(apt, "sources.list.d", "aaa.list.disabled-by-admin"), "deb http://wrong.example/debian bookworm main\n");
    assert.equal(await detectMirror("bookworm", apt), "http://deb.debian.org/debian");
    writeFileSync(join(apt, "sources.list.d", "debian.sources"), DEB822);
    assert.equal(await detectMirror("bookworm", apt), "http://mirror.example.org/debian");
    writeFileSync(join(apt, "sources.list"), "deb http://first.example/debian bookworm main\n");
    assert.equal(await detectMirror("bookworm", apt), "http://first.example/debian", "sources.list comes first, as apt reads it");
  });
});
