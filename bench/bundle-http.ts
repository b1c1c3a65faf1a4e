// Issue 15's A/B: the HTTP client of a bundle pull alone. A 512 MiB body (Content-Length,
// plain http, a 1 MiB random block repeated) comes from a node:http server in a child process
// on 127.0.0.1, and is downloaded by each client into the same receiver, rounds alternating
// which client goes first (one warm-up round not counted); medians, CPU (user + system of this
// process, all its threads) and the ratio to the first client. The clients (BENCH_CLIENTS):
//   banger     bundle/http.ts, the hand-written client: the socket reads straight into the receiver
//   undici     undici's `request`, its body stream copied into the receiver (a maintained client)
//   undici-1m  the same with a 1 MiB highWaterMark on the body stream (the default is 64 KiB)
//   dispatch   undici's lower-level dispatch with a handler: chunks copied from its parser, no stream
//   fetch      Node's own fetch (undici inside Node), copied the same way
// The receivers (BENCH_SINK):
//   feeder     the real pull's receiver (bundle/feeder.ts): 1 MiB batches handed to two worker
//              threads that hash them (sha256, checked at the end) and append them to a cache
//              file; zstd's FIFO is /dev/null here, so the decoder's cost is not in the figure
//   discard    one reused buffer, counted only: the client's own cost, nothing else
// The rule (issue 15): keep bundle/http.ts only while it beats `request` by more than 15%.
// Measured 2026-12-03 on 2 shared cores (load average 11-15, so wall times swing; CPU is the
// steadier figure), BENCH_RUNS=7, all five clients, medians:
//   feeder:  banger 1402 ms (CPU 811), undici 7668 (3396), undici-1m 5401 (2891), dispatch 4864 (2573), fetch 10051 (3723)
//   discard: banger 1368 ms (CPU 129), undici 10610 (1921), undici-1m 10360 (2339), dispatch 10117 (2474), fetch 11932 (3062)
// And end to end (bench/bundle-pull.ts, BENCH_RUNS=5, with source.ts's openHttp reading through
// `request` instead, runs A/B/A): banger 2422 ms = 1.21x curl|zstd|tar, CPU 1890 ms, peak RSS
// 90 MiB; undici 6931 and 5084 ms = 1.92x and 2.11x, CPU 3140 and 3250 ms, peak RSS 153-157 MiB.
//
// Run: node --import tsx bench/bundle-http.ts
//   (BENCH_RUNS=7, BENCH_MIB=512, BENCH_SINK=feeder,discard, BENCH_CLIENTS=banger,undici; the
//   first named is the one ratios are to; all five as above take ~10 minutes on a busy host)
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Dispatcher, getGlobalDispatcher, request } from "undici";
import { Feeder } from "../src/bundle/feeder.ts";
import { httpGet } from "../src/bundle/http.ts";
import { MiB, median, onCleanup, runBench } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const SIZE = Number(process.env.BENCH_MIB ?? 512) * MiB;
const SINKS = (process.env.BENCH_SINK ?? "feeder,discard").split(",") as SinkKind[];

type SinkKind = "feeder" | "discard";

/** Where a body goes, as bundle/source.ts's ByteSink: `space()` to write into, `commit(n)` may ask to wait. */
interface Receiver {
  space(): Buffer;
  commit(n: number): Promise<void> | undefined;
  /** The sha256 of all bytes when the receiver hashes, after the last commit. */
  finish(): Promise<string | undefined>;
  close(): Promise<void>;
}

/** A client downloads `url` into `sink` and resolves with the byte count. */
type Client = (url: string, sink: Receiver) => Promise<number>;

const CLIENTS: Record<string, Client> = {
  banger: async (url, sink) => {
    const res = await httpGet(new URL(url), { idleTimeoutMs: 30_000 });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return res.readInto(sink);
  },
  undici: async (url, sink) => {
    const res = await request(url, { headersTimeout: 30_000, bodyTimeout: 30_000 });
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return copyChunks(res.body, sink);
  },
  "undici-1m": async (url, sink) => {
    const res = await request(url, { headersTimeout: 30_000, bodyTimeout: 30_000, highWaterMark: MiB });
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return copyChunks(res.body, sink);
  },
  dispatch: (url, sink) => dispatchInto(url, sink),
  fetch: async (url, sink) => {
    const res = await fetch(url);
    if (res.status !== 200 || !res.body) throw new Error(`HTTP ${res.status}`);
    return copyChunks(res.body, sink);
  },
};

/** undici without its body stream: a dispatch handler copies each chunk into the receiver, pausing the connection while it asks to wait. */
function dispatchInto(url: string, sink: Receiver): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let total = 0;
    let waits = 0;
    let resume = () => undefined as void;
    // undici 7's pools take the (deprecated, still supported) onConnect/onHeaders/onData handler form.
    const handler: Dispatcher.DispatchHandler = {
      onConnect: () => undefined,
      onHeaders: (status, _raw, resumeFn) => {
        resume = resumeFn;
        if (status !== 200) reject(new Error(`HTTP ${status}`));
        return true;
      },
      onData: (chunk) => {
        for (let off = 0; off < chunk.length; ) {
          const room = sink.space();
          const n = chunk.copy(room, 0, off);
          off += n;
          total += n;
          const wait = sink.commit(n);
          if (!wait) continue;
          waits++;
          wait.then(() => void (--waits === 0 && resume()), reject);
        }
        return waits === 0;
      },
      onComplete: () => resolve(total),
      onError: reject,
    };
    getGlobalDispatcher().dispatch({ origin: u.origin, path: u.pathname, method: "GET", headersTimeout: 30_000, bodyTimeout: 30_000 }, handler);
  });
}

/** The stream clients' path into a receiver: each chunk copied into its space, waiting when it asks. */
async function copyChunks(chunks: AsyncIterable<Uint8Array>, sink: Receiver): Promise<number> {
  let total = 0;
  for await (const chunk of chunks) {
    for (let off = 0; off < chunk.length; ) {
      const room = sink.space();
      const n = Math.min(room.length, chunk.length - off);
      room.set(chunk.subarray(off, off + n));
      off += n;
      total += n;
      const wait = sink.commit(n);
      if (wait) await wait;
    }
  }
  return total;
}

function makeReceiver(kind: SinkKind, work: string): Receiver {
  if (kind === "discard") {
    const buf = Buffer.allocUnsafe(MiB);
    return { space: () => buf, commit: () => undefined, finish: async () => undefined, close: async () => undefined };
  }
  const cacheFile = join(work, "partial");
  const fd = openSync(cacheFile, "w", 0o600);
  const feeder = new Feeder("/dev/null", fd, new AbortController().signal);
  return {
    space: () => feeder.space(),
    commit: (n) => feeder.commit(n),
    finish: () => feeder.finish(),
    close: async () => {
      await feeder.close();
      closeSync(fd);
      rmSync(cacheFile, { force: true });
    },
  };
}

/** Starts the server child; resolves with its URL. The body is `block` repeated up to SIZE bytes. */
async function startServer(blockPath: string): Promise<string> {
  const script = `
    const http = require("node:http");
    const block = require("node:fs").readFileSync(process.env.BLOCK);
    const size = Number(process.env.SIZE);
    http.createServer((req, res) => {
      res.writeHead(200, { "content-length": size, "content-type": "application/octet-stream" });
      let left = size;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, block.length);
          left -= n;
          if (!res.write(n === block.length ? block : block.subarray(0, n))) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    }).listen(0, "127.0.0.1", function () { process.stdout.write(this.address().port + "\\n"); });`;
  const child = spawn(process.execPath, ["-e", script], { env: { ...process.env, BLOCK: blockPath, SIZE: String(SIZE) }, stdio: ["ignore", "pipe", "inherit"] });
  onCleanup(() => void child.kill());
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout.once("data", (b: Buffer) => resolve(b.toString().trim()));
    child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return `http://127.0.0.1:${port}/bundle.tar.zst`;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "bgr-bench-http-"));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const block = randomBytes(MiB);
  writeFileSync(join(work, "block"), block);
  const expected = createHash("sha256");
  for (let done = 0; done < SIZE; done += MiB) expected.update(block.subarray(0, Math.min(MiB, SIZE - done)));
  const digest = expected.digest("hex");
  const url = await startServer(join(work, "block"));
  const names = (process.env.BENCH_CLIENTS ?? "banger,undici").split(",");
  for (const n of names) if (!CLIENTS[n]) throw new Error(`unknown client ${n}: one of ${Object.keys(CLIENTS).join(", ")}`);
  console.log(`${SIZE / MiB} MiB over http://127.0.0.1, ${RUNS} rounds (plus one warm-up), clients: ${names.join(", ")}`);

  for (const kind of SINKS) {
    const wall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    const cpu: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    for (let round = 0; round <= RUNS; round++) {
      // Rotating who goes first, so no client always inherits the other's garbage or page cache.
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      const line: string[] = [];
      for (const name of order) {
        const sink = makeReceiver(kind, work);
        try {
          const cpu0 = process.cpuUsage();
          const t0 = process.hrtime.bigint();
          const n = await CLIENTS[name]!(url, sink);
          const got = await sink.finish();
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          const used = process.cpuUsage(cpu0);
          if (n !== SIZE) throw new Error(`${name}: got ${n} bytes, expected ${SIZE}`);
          if (got !== undefined && got !== digest) throw new Error(`${name}: sha256 ${got}, expected ${digest}`);
          if (round === 0) continue; // warm-up: JIT, page cache, the server's first connection
          wall[name]!.push(ms);
          cpu[name]!.push((used.user + used.system) / 1000);
          line.push(`${name} ${ms.toFixed(0)} ms (CPU ${((used.user + used.system) / 1000).toFixed(0)})`);
        } finally {
          await sink.close();
        }
      }
      if (round > 0) console.log(`[${kind}] round ${round}: ${line.join("   ")}`);
    }
    const base = median(wall[names[0]!]!);
    for (const name of names) {
      const m = median(wall[name]!);
      console.log(
        `[${kind}] median ${name.padEnd(7)} ${m.toFixed(0).padStart(5)} ms  ${((SIZE / MiB / m) * 1000).toFixed(0).padStart(5)} MiB/s  CPU ${median(cpu[name]!).toFixed(0).padStart(5)} ms  ratio to ${names[0]} ${(m / base).toFixed(2)}`,
      );
    }
  }
}

await runBench(main);
