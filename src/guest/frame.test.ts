// Properties of the frame decoder (fast-check): how guest bytes are cut into reads never
// changes what is decoded; any bytes at all either decode or fail with the decoder's own
// protocol error; and the decoder never holds more than one maximal frame.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { FrameDecoder, FrameType, HEADER_SIZE, MAX_PAYLOAD, Stream, encodeFrame, type Frame } from "./frame.ts";

const frameArb = fc.record({
  channel: fc.nat({ max: 0xffffffff }),
  type: fc.integer({ min: FrameType.Hello, max: FrameType.Close }) as fc.Arbitrary<FrameType>,
  stream: fc.constantFrom(Stream.In, Stream.Out, Stream.Err),
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
});

/** Cuts `bytes` at the given points (any order, duplicates allowed): the reads a socket might deliver. */
function chunk(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  return out;
}

type Outcome = { frames: Frame[]; error?: string };

/** Feeds the reads one by one, checking the memory bound after each; stops at the first error. */
function decode(reads: Buffer[]): Outcome {
  const d = new FrameDecoder();
  const frames: Frame[] = [];
  for (const r of reads) {
    try {
      frames.push(...d.push(r));
    } catch (err) {
      assert.ok(err instanceof BangerError && err.code === ErrorCode.Integrity, `only the decoder's own error, not ${String(err)}`);
      assert.match(err.message, /^guest agent protocol violation: /);
      return { frames, error: err.message };
    }
    assert.ok(d.buffered < HEADER_SIZE + MAX_PAYLOAD, `holds ${d.buffered} bytes: more than one maximal frame`);
  }
  return { frames };
}

/** A push that fails drops the frames before the bad header in the same read (the connection ends anyway): compare frames only when none failed. */
const plain = (o: Outcome) => (o.error ? { error: o.error } : { frames: o.frames.map((f) => ({ ...f, payload: f.payload.toString("hex") })) });

/** More than a frame of filler; named in counterexamples instead of printed. */
const BIG_FILL = Object.assign(Buffer.alloc(HEADER_SIZE + MAX_PAYLOAD, 0x01), { [fc.toStringMethod]: () => "BIG_FILL" });

/** Bytes that are mostly frame-shaped: valid headers announcing any length (up to 4 GiB), junk, and payload bytes. */
const hostileBytes = fc.array(
  fc.oneof(
    frameArb.map((f) => encodeFrame(f.channel, f.type, f.payload, f.stream)),
    fc.record({ len: fc.oneof(fc.nat({ max: 0xffffffff }), fc.constantFrom(MAX_PAYLOAD, MAX_PAYLOAD + 1)), type: fc.nat({ max: 12 }), stream: fc.nat({ max: 3 }) }).map(({ len, type, stream }) => {
      const h = Buffer.alloc(HEADER_SIZE);
      h.writeUInt32BE(len, 0);
      h.writeUInt8(type, 8);
      h.writeUInt8(stream, 9);
      return h;
    }),
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    { arbitrary: fc.constant(BIG_FILL), weight: 1 }, // enough to exceed a frame: a decoder that buffers before checking the length shows
  ),
  { maxLength: 12 },
); // parts, concatenated in the property: a counterexample then prints readably

describe("frame decoder properties", () => {
  test("any chunking of a valid frame stream decodes to the same frames, and nothing is left over", () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 40 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.channel, f.type, f.payload, f.stream)));
        const d = new FrameDecoder();
        const got = chunk(bytes, cuts).flatMap((r) => d.push(r));
        assert.deepEqual(
          got.map((f) => [f.channel, f.type, f.stream, f.payload.toString("hex")]),
          frames.map((f) => [f.channel, f.type, f.stream, f.payload.toString("hex")]),
        );
        assert.equal(d.buffered, 0);
      }),
      { numRuns: 300 },
    );
  });

  test("a maximal frame split anywhere decodes whole", () => {
    const big = encodeFrame(9, FrameType.Data, Buffer.alloc(MAX_PAYLOAD, 0x5a), Stream.Out);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 8 }), (cuts) => {
        const { frames, error } = decode(chunk(big, cuts));
        assert.equal(error, undefined);
        assert.equal(frames.length, 1);
        assert.equal(frames[0]!.payload.length, MAX_PAYLOAD);
      }),
      { numRuns: 25 },
    );
  });

  test("arbitrary bytes: frames or the decoder's protocol error, the same however they are cut, within one frame of memory", () => {
    fc.assert(
      fc.property(hostileBytes, fc.array(fc.nat(), { maxLength: 30 }), (parts, cuts) => {
        const bytes = Buffer.concat(parts);
        assert.deepEqual(plain(decode(chunk(bytes, cuts))), plain(decode([bytes])));
      }),
      { numRuns: 1000 },
    );
  });
});
