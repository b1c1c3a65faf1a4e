package main

// Fuzz targets for everything the agent parses before a channel exists: frame headers and
// payloads (readFrame) and the magic that opens a session (scanForMagic). The host is
// trusted more than the guest, but a serial port carries stale bytes and a bug here is a
// panic in PID 1. `go test` runs the seed corpora in testdata/fuzz/<Name>/ as plain tests
// (npm test runs them: test/agent-go.test.ts); to search for new inputs, by hand:
//   cd agent && go test -run '^$' -fuzz FuzzReadFrame -fuzztime 30s

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrame(frame{channel: 1, typ: tData, stream: streamOut, payload: []byte("hi")}))
	f.Add(encodeFrame(frame{channel: 0, typ: tHello, payload: []byte(`{"version":1}`)}))
	f.Add(append(magic(protoVersion), 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			fr, err := readFrame(r)
			if err != nil {
				return
			}
			if len(fr.payload) > maxPayload || fr.typ < tHello || fr.typ > tClose || fr.stream >= numStreams {
				t.Fatalf("accepted an invalid frame: type %d stream %d length %d", fr.typ, fr.stream, len(fr.payload))
			}
			consumed := data[len(data)-before : len(data)-r.Len()]
			if len(consumed) != headerSize+len(fr.payload) {
				t.Fatalf("consumed %d bytes for a %d-byte payload", len(consumed), len(fr.payload))
			}
			if binary.BigEndian.Uint32(consumed[0:4]) != uint32(len(fr.payload)) {
				t.Fatal("payload length differs from the header")
			}
			// A frame read back from its own encoding is the same frame, byte for byte.
			if !bytes.Equal(encodeFrame(fr), consumed) {
				t.Fatalf("re-encoding differs:\n% x\n% x", encodeFrame(fr), consumed)
			}
		}
	})
}

// FuzzReadFrameChunked: how the bytes arrive (one at a time, or all at once) never changes the frames read.
func FuzzReadFrameChunked(f *testing.F) {
	two := append(encodeFrame(frame{channel: 3, typ: tWindow, stream: streamIn, payload: []byte{0, 0, 1, 0}}), encodeFrame(frame{channel: 3, typ: tEOF})...)
	f.Add(two, uint8(1))
	f.Add(two, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole := readAll(bytes.NewReader(data))
		pieces := readAll(bufio.NewReader(&chunkReader{data: data, n: int(chunk%16) + 1}))
		if len(whole) != len(pieces) {
			t.Fatalf("%d frames whole, %d in pieces", len(whole), len(pieces))
		}
		for i := range whole {
			if !bytes.Equal(encodeFrame(whole[i]), encodeFrame(pieces[i])) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}

func readAll(r io.Reader) []frame {
	var out []frame
	for {
		f, err := readFrame(r)
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

// chunkReader returns at most n bytes per Read: a slow or fragmenting transport.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := c.n
	if k > len(p) {
		k = len(p)
	}
	if k > len(c.data) {
		k = len(c.data)
	}
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

func FuzzScanForMagic(f *testing.F) {
	f.Add(magic(protoVersion), 0)
	f.Add(append([]byte("stale BNG junk BBNGR"), 1, 0, 0, 0), -1)
	f.Add([]byte("BNGRBNGR\x01\x00\x00\x00"), 8)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		v, err := scanForMagic(bufio.NewReader(bytes.NewReader(data)), limit)
		if err != nil {
			return
		}
		// Success means the magic is really there, with the version that was returned,
		// and (when bounded) no more than limit bytes came before it.
		at := bytes.Index(data, append(append([]byte{}, magicPrefix...), v, 0, 0, 0))
		if at < 0 {
			t.Fatalf("reported version %d, but no such magic in % x", v, data)
		}
		if limit >= 0 && at > limit {
			t.Fatalf("skipped %d bytes with a limit of %d", at, limit)
		}
	})
}
