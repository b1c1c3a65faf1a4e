package main

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	in := frame{channel: 7, typ: tData, stream: streamErr, payload: []byte("hello")}
	out, err := readFrame(bytes.NewReader(encodeFrame(in)))
	if err != nil {
		t.Fatal(err)
	}
	if out.channel != 7 || out.typ != tData || out.stream != streamErr || string(out.payload) != "hello" {
		t.Fatalf("got %+v", out)
	}
}

func TestFrameRejectsOversizedAndUnknown(t *testing.T) {
	big := encodeFrame(frame{channel: 1, typ: tData})
	big[0] = 0x7f // ~2 GB announced
	if _, err := readFrame(bytes.NewReader(big)); !errors.Is(err, errFrameTooBig) {
		t.Fatalf("oversized: %v", err)
	}
	bad := encodeFrame(frame{channel: 1, typ: tData})
	bad[8] = 42
	if _, err := readFrame(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "unknown frame type") {
		t.Fatalf("unknown type: %v", err)
	}
	// The magic read as a header is an oversized frame: a stale stream fails fast.
	if _, err := readFrame(bytes.NewReader(append(magic(1), 0, 0, 0, 0))); !errors.Is(err, errFrameTooBig) {
		t.Fatalf("magic as header: %v", err)
	}
}

func TestScanForMagic(t *testing.T) {
	stream := append([]byte("stale BNG junk BBNGR"), 1, 0, 0, 0)
	v, err := scanForMagic(bufio.NewReader(bytes.NewReader(stream)), -1)
	if err != nil || v != 1 {
		t.Fatalf("resync: v=%d err=%v", v, err)
	}
	if _, err := scanForMagic(bufio.NewReader(bytes.NewReader(stream)), 0); err == nil {
		t.Fatal("strict mode accepted leading garbage")
	}
	if v, err := scanForMagic(bufio.NewReader(bytes.NewReader(magic(3))), 0); err != nil || v != 3 {
		t.Fatalf("strict: v=%d err=%v", v, err)
	}
}
