// Test fixture, run inside a network namespace: serves `.vm` DNS for the names in argv[3]
// (JSON {name: ipv4}) on argv[2] port 53 until killed, and prints "ready" once listening.
import { startDnsServer } from "./dns.ts";

const [host, namesJson] = process.argv.slice(2);
const names = JSON.parse(namesJson ?? "{}") as Record<string, string>;
await startDnsServer({ host: host!, lookup: (n) => (names[n] ? { ipv4: [names[n]!] } : undefined) });
console.log("ready");
