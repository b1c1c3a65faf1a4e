// The `.vm` DNS server on loopback, queried by the real dig, and fed garbage.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
import { run } from "../util/exec.ts";
import { ErrorCode } from "../util/errors.ts";
import { answerQuery, startDnsServer, type DnsServer, type VmAddresses } from "./index.ts";

const VMS: Record<string, VmAddresses> = {
  alpha: { ipv4: ["172.30.0.2"], ipv6: ["fd00::2"] },
  "beta.v2": { ipv4: ["172.30.0.3"] },
};
let server: DnsServer;

before(async () => {
  server = await startDnsServer({ host: "127.0.0.1", port: 0, lookup: (name) => VMS[name] });
});
after(() => server.close());

async function dig(name: string, type = "A", ...extra: string[]): Promise<{ status: string; answers: string[] }> {
  const res = await run(["dig", "@127.0.0.1", "-p", String(server.port), name, type, "+time=2", "+tries=1", ...extra]);
  const status = /status: (\w+)/.exec(res.stdout)?.[1] ?? `no reply: ${res.stdout}`;
  const answers = res.stdout.split("\n").filter((l) => l !== "" && !l.startsWith(";")).map((l) => l.split(/\s+/).slice(3).join(" "));
  return { status, answers };
}

test("A and AAAA for <vm>.vm, case-insensitive, over UDP and TCP", async () => {
  assert.deepEqual(await dig("alpha.vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("ALPHA.Vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("alpha.vm", "AAAA"), { status: "NOERROR", answers: ["AAAA fd00::2"] });
  assert.deepEqual(await dig("beta.v2.vm", "A", "+tcp"), { status: "NOERROR", answers: ["A 172.30.0.3"] });
  assert.deepEqual(await dig("beta.v2.vm", "AAAA"), { status: "NOERROR", answers: [] }, "no IPv6: empty answer, not an error");
});

test("unknown VMs are NXDOMAIN; every other name is REFUSED", async () => {
  assert.equal((await dig("nosuch.vm")).status, "NXDOMAIN");
  assert.equal((await dig("vm")).status, "NXDOMAIN");
  assert.equal((await dig("example.com")).status, "REFUSED");
  assert.equal((await dig("alpha.vm.example.com")).status, "REFUSED");
  assert.equal((await dig("example.com", "A", "+tcp")).status, "REFUSED");
});

test("garbage is dropped and the server keeps answering", async () => {
  const udp = createSocket("udp4");
  for (const size of [0, 1, 11, 12, 13, 100, 512, 4000]) {
    for (let i = 0; i < 5; i++) udp.send(randomBytes(size), server.port, "127.0.0.1");
  }
  // A header claiming 65535 questions with nothing behind it.
  udp.send(Buffer.from("abcd0100ffff000000000000", "hex"), server.port, "127.0.0.1");
  await new Promise((r) => setTimeout(r, 100));
  udp.close();
  for (const payload of [randomBytes(300), Buffer.from([0xff, 0xff, 1, 2, 3]), Buffer.from([0, 5, 1, 2, 3, 4, 5])]) {
    await new Promise<void>((resolve) => {
      const c = connect(server.port, "127.0.0.1", () => c.end(payload));
      c.on("error", () => resolve());
      c.on("close", () => resolve());
      c.resume();
    });
  }
  assert.deepEqual(await dig("alpha.vm"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
  assert.deepEqual(await dig("alpha.vm", "A", "+tcp"), { status: "NOERROR", answers: ["A 172.30.0.2"] });
});

test("a failing lookup gives SERVFAIL; responses are never answered", () => {
  const query = Buffer.from("12340100000100000000000005616c70686102766d0000010001", "hex"); // alpha.vm A, RD
  const servfail = answerQuery(query, () => {
    throw new Error("store gone");
  });
  assert.equal(servfail!.readUInt16BE(2) & 0xf, 2);
  const bad = answerQuery(query, () => ({ ipv4: ["not-an-ip"] }));
  assert.equal(bad!.readUInt16BE(2) & 0xf, 2);
  const response = Buffer.from(query);
  response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
  assert.equal(answerQuery(response, () => undefined), undefined);
});

test("a port already in use is a clear error", async () => {
  await assert.rejects(startDnsServer({ host: "127.0.0.1", port: server.port, lookup: () => undefined }), (err: any) => {
    assert.equal(err.code, ErrorCode.Unavailable);
    assert.match(err.message, /cannot serve DNS on 127\.0\.0\.1:\d+: EADDRINUSE/);
    return true;
  });
});
