// One architecture vocabulary: amd64/arm64 out, the other spellings accepted in.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BangerError, ErrorCode } from "./errors.ts";
import { hostArch, normalizeArch, parseArch } from "./arch.ts";

describe("arch", () => {
  it("names every spelling of x86-64 amd64 and of 64-bit ARM arm64", () => {
    for (const text of ["amd64", "x86_64", "X86_64", "x86-64", "x64", " amd64 "]) assert.equal(normalizeArch(text), "amd64", text);
    for (const text of ["arm64", "aarch64", "AArch64"]) assert.equal(normalizeArch(text), "arm64", text);
  });

  it("keeps architectures it does not know, lower-cased (an OCI index may list them)", () => {
    assert.equal(normalizeArch("riscv64"), "riscv64");
    assert.equal(normalizeArch("S390X"), "s390x");
    assert.equal(normalizeArch("armhf"), "arm");
  });

  it("takes a user's --arch in any spelling and refuses the rest as usage, naming the flag", () => {
    assert.equal(parseArch("x86_64"), "amd64");
    assert.equal(parseArch("aarch64"), "arm64");
    assert.throws(
      () => parseArch("riscv64"),
      (e) => e instanceof BangerError && e.code === ErrorCode.InvalidArgument && /^--arch takes amd64 or arm64/.test(e.message),
    );
  });

  it("says the host's architecture as banger does, not as Node does", () => {
    assert.equal(hostArch("x64"), "amd64");
    assert.equal(hostArch("arm64"), "arm64");
    assert.ok(["amd64", "arm64"].includes(hostArch()), hostArch());
  });
});
