// The one loopback test the CLI's forwards, the registry client and the dashboard share.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isLoopbackHost } from "./loopback.ts";

describe("isLoopbackHost", () => {
  test("localhost, ::1 and all of 127.0.0.0/8 are loopback", () => {
    for (const h of ["localhost", "::1", "127.0.0.1", "127.1.2.3", "127.255.255.254"]) assert.ok(isLoopbackHost(h), h);
  });
  test("other addresses, wildcards, names and malformed literals are not", () => {
    for (const h of ["0.0.0.0", "::", "128.0.0.1", "10.0.0.1", "example.com", "127.0.0.1.example.com", "127.999.0.1", "[::1]", "127.0.0.1:80", ""]) {
      assert.ok(!isLoopbackHost(h), h);
    }
  });
});
