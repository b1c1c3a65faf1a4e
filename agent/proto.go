package main

// Wire format shared with src/guest (see PROTOCOL.md). Everything here is pure framing:
// no I/O policy, so the tests can drive it with in-memory pipes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	protoVersion = 1
	headerSize   = 12
	// maxPayload bounds every frame either side accepts; bigger is a protocol error.
	maxPayload = 1 << 20
	// dataChunk is the largest DATA payload the agent sends (smaller frames keep channels fair).
	dataChunk = 32 << 10
	// initialWindow is the credit each side starts with per stream, per direction.
	initialWindow = 256 << 10
)

// magic opens every connection in both directions: "BNGR", version, three zero bytes.
// Read as a frame length it is ~1.1 GB, so a stale stream that meets it fails fast and resyncs.
var magicPrefix = []byte("BNGR")

func magic(version byte) []byte { return []byte{'B', 'N', 'G', 'R', version, 0, 0, 0} }

// Frame types.
const (
	tHello   = 1  // ch 0, JSON: version negotiation and capabilities
	tOpen    = 2  // host→agent, JSON: start a channel of some kind
	tOpened  = 3  // agent→host, JSON: the channel is running (e.g. {"pid":12})
	tData    = 4  // bytes on (channel, stream)
	tEOF     = 5  // no more bytes on (channel, stream)
	tWindow  = 6  // u32 BE: more credit for (channel, stream)
	tControl = 7  // host→agent, JSON: signal, resize
	tResult  = 8  // agent→host, JSON: final result of the channel (exit status, stats...)
	tError   = 9  // JSON {"code","message"}: channel failed; on ch 0 the connection is over
	tClose   = 10 // either side: channel finished, forget it
)

// Streams within a channel.
const (
	streamIn   = 0 // stdin / uploaded tar / tcp bytes host→guest
	streamOut  = 1 // stdout / pty output / downloaded tar / tcp bytes guest→host
	streamErr  = 2 // stderr
	numStreams = 3
)

type frame struct {
	channel uint32
	typ     byte
	stream  byte
	payload []byte
}

var errFrameTooBig = errors.New("frame payload exceeds the maximum size")

// encodeFrame lays out: u32 payload length | u32 channel | u8 type | u8 stream | u16 zero | payload.
func encodeFrame(f frame) []byte {
	buf := make([]byte, headerSize+len(f.payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(f.payload)))
	binary.BigEndian.PutUint32(buf[4:8], f.channel)
	buf[8] = f.typ
	buf[9] = f.stream
	copy(buf[headerSize:], f.payload)
	return buf
}

// readFrame reads one frame, refusing oversized or malformed headers before allocating.
func readFrame(r io.Reader) (frame, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > maxPayload {
		return frame{}, fmt.Errorf("%w (%d > %d)", errFrameTooBig, n, maxPayload)
	}
	if hdr[10] != 0 || hdr[11] != 0 {
		return frame{}, errors.New("frame header reserved bytes are not zero")
	}
	f := frame{channel: binary.BigEndian.Uint32(hdr[4:8]), typ: hdr[8], stream: hdr[9]}
	if f.typ < tHello || f.typ > tClose {
		return frame{}, fmt.Errorf("unknown frame type %d", f.typ)
	}
	if f.stream >= numStreams {
		return frame{}, fmt.Errorf("unknown stream %d", f.stream)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, err
	}
	return f, nil
}

// scanForMagic discards bytes until "BNGR" and returns the version byte that follows.
// Used on the virtio-serial port, where a reconnecting host may leave stale bytes behind.
// limit bounds how many bytes may be skipped (negative = unbounded, for the serial port).
func scanForMagic(r io.ByteReader, limit int) (byte, error) {
	matched, skipped := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b == magicPrefix[matched] {
			matched++
			if matched == len(magicPrefix) {
				break
			}
			continue
		}
		skipped += matched + 1
		matched = 0
		if b == magicPrefix[0] {
			matched = 1
			skipped--
		}
		if limit >= 0 && skipped > limit {
			return 0, errors.New("no protocol magic at the start of the stream")
		}
	}
	var rest [4]byte
	for i := range rest {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		rest[i] = b
	}
	if rest[1] != 0 || rest[2] != 0 || rest[3] != 0 {
		return 0, errors.New("malformed protocol magic")
	}
	return rest[0], nil
}
