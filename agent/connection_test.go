package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testHost is a minimal host side for driving connections over an in-memory pipe.
type testHost struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (h *testHost) send(f frame) {
	if _, err := h.conn.Write(encodeFrame(f)); err != nil {
		h.t.Fatal(err)
	}
}

// sendAsync writes frames from another goroutine (the pipe is unbuffered, so a test sends
// while it reads the replies) and reports the first write error, or nil, on the channel it
// returns. The writer never fails the test itself: it may still be running when the agent
// has answered, and a test must wait for it before it ends.
func (h *testHost) sendAsync(frames ...frame) <-chan error {
	sent := make(chan error, 1)
	go func() {
		for _, f := range frames {
			if _, err := h.conn.Write(encodeFrame(f)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	return sent
}

func (h *testHost) sendJSON(ch uint32, typ byte, v interface{}) {
	b, _ := json.Marshal(v)
	h.send(frame{channel: ch, typ: typ, payload: b})
}

func (h *testHost) next() frame {
	h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(h.br)
	if err != nil {
		h.t.Fatal(err)
	}
	return f
}

// nextOn skips frames of other channels and returns the next one of ch.
func (h *testHost) nextOn(ch uint32) frame {
	for {
		if f := h.next(); f.channel == ch {
			return f
		}
	}
}

func (h *testHost) handshake(prefix string) {
	go h.conn.Write(append([]byte(prefix), magic(protoVersion)...))
	h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 8)
	if _, err := io.ReadFull(h.br, got); err != nil || string(got) != string(magic(protoVersion)) {
		h.t.Fatalf("magic reply %q %v", got, err)
	}
	h.sendJSON(0, tHello, helloMsg{Version: 1})
	if f := h.next(); f.typ != tHello {
		h.t.Fatalf("expected HELLO, got %d", f.typ)
	}
}

func newTestSession(t *testing.T, resync bool) (*testHost, chan error, *server) {
	hostEnd, agentEnd := net.Pipe()
	srv := &server{reaper: testReaper, log: io.Discard, shutdown: func() {}}
	done := make(chan error, 4)
	go func() {
		br := bufio.NewReader(agentEnd)
		for i := 0; i < 2; i++ { // the second run is the reconnect in the serial test
			done <- newConn(srv, nopCloser{agentEnd}, br, resync).run()
		}
	}()
	t.Cleanup(func() { hostEnd.Close(); agentEnd.Close() })
	return &testHost{t: t, conn: hostEnd, br: bufio.NewReader(hostEnd)}, done, srv
}

var testReaper = newReaper()

func TestSessionExecAndStats(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	h.sendJSON(1, tOpen, openReq{Kind: "exec", Argv: []string{"sh", "-c", "printf hi; exit 4"}})
	var out strings.Builder
	var result exitResult
	for done := false; !done; {
		f := h.next()
		switch f.typ {
		case tData:
			out.Write(f.payload)
		case tResult:
			json.Unmarshal(f.payload, &result)
		case tClose:
			done = true
		case tError:
			t.Fatalf("error: %s", f.payload)
		}
	}
	if out.String() != "hi" || result.ExitCode == nil || *result.ExitCode != 4 {
		t.Fatalf("out=%q result=%+v", out.String(), result)
	}
	h.sendJSON(3, tOpen, openReq{Kind: "stats"})
	if f := h.next(); f.typ != tResult || !strings.Contains(string(f.payload), `"memory"`) {
		t.Fatalf("stats: %d %s", f.typ, f.payload)
	}
}

func TestSessionUnknownKindIsChannelError(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	h.sendJSON(5, tOpen, openReq{Kind: "teleport"})
	f := h.next()
	if f.typ != tError || f.channel != 5 || !strings.Contains(string(f.payload), "unsupported") {
		t.Fatalf("got %d %s", f.typ, f.payload)
	}
}

// On the serial port a reconnecting host may leave junk; the next magic starts a new connection.
func TestSerialResyncStartsNewSession(t *testing.T) {
	h, done, _ := newTestSession(t, true)
	h.handshake("leftover bytes from an old host")
	h.handshake("") // magic mid-connection: the agent drops the old connection and answers again
	if err := <-done; !errors.Is(err, errNewConn) {
		t.Fatalf("first connection ended with %v", err)
	}
	h.sendJSON(1, tOpen, openReq{Kind: "health"})
	if f := h.next(); f.typ != tResult {
		t.Fatalf("health after reconnect: %d", f.typ)
	}
}

// hostSwap is a serial port as the agent sees it when one host leaves and the next one
// arrives at once: a read returns EOF (no host), the very next read the new host's bytes.
type hostSwap struct {
	reads  [][]byte // nil = EOF
	writes bytes.Buffer
}

func (p *hostSwap) Read(b []byte) (int, error) {
	if len(p.reads) == 0 {
		return 0, io.ErrClosedPipe
	}
	next := p.reads[0]
	if next == nil {
		p.reads = p.reads[1:]
		return 0, io.EOF
	}
	n := copy(b, next)
	if n == len(next) {
		p.reads = p.reads[1:]
	} else {
		p.reads[0] = next[n:]
	}
	return n, nil
}

func (p *hostSwap) Write(b []byte) (int, error) { return p.writes.Write(b) }

func helloBytes(nonce string) []byte {
	b, _ := json.Marshal(helloMsg{Version: 1, Nonce: nonce})
	return append(magic(protoVersion), encodeFrame(frame{channel: 0, typ: tHello, payload: b})...)
}

// Regression: the EOF of a departed host must end the connection before anything else is
// read, or the next host's magic is parsed as a frame header and its handshake is lost.
func TestSerialHostSwapKeepsNextHandshake(t *testing.T) {
	port := &hostSwap{reads: [][]byte{helloBytes("first"), nil, helloBytes("second")}}
	srv := &server{reaper: testReaper, log: io.Discard, shutdown: func() {}}
	br := bufio.NewReader(port)
	if err := newConn(srv, nopCloser{port}, br, true).run(); err != io.EOF {
		t.Fatalf("first connection should end at the host's EOF, got %v", err)
	}
	newConn(srv, nopCloser{port}, br, true).run()
	if !strings.Contains(port.writes.String(), `"nonce":"second"`) {
		t.Fatalf("the second host's HELLO was not answered; agent wrote %q", port.writes.String())
	}
}

func TestWindowViolationEndsSession(t *testing.T) {
	h, done, _ := newTestSession(t, false)
	h.handshake("")
	h.sendJSON(1, tOpen, openReq{Kind: "exec", Argv: []string{"sleep", "5"}, Stdin: true})
	if f := h.next(); f.typ != tOpened {
		t.Fatalf("expected OPENED, got %d", f.typ)
	}
	chunk := make([]byte, 200<<10)
	sent := h.sendAsync(frame{channel: 1, typ: tData, payload: chunk}, frame{channel: 1, typ: tData, payload: chunk}) // 400 KiB > 256 KiB window
	for {
		f := h.next()
		if f.channel == 0 && f.typ == tError {
			if !strings.Contains(string(f.payload), "window") {
				t.Fatalf("error: %s", f.payload)
			}
			break
		}
	}
	if err := <-done; err == nil {
		t.Fatal("connection survived a window violation")
	}
	<-sent // the second write may fail: the agent ends the connection on it
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// files.put grants a bulk window up front: the host may send bulkWindow bytes before any
// credit comes back, in frames bigger than the agent's own dataChunk.
func TestFilesPutGrantsBulkWindow(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dest := t.TempDir()
	h.sendJSON(1, tOpen, openReq{Kind: "files.put", Path: dest})
	f := h.next()
	if f.typ != tWindow || f.stream != streamIn || binary.BigEndian.Uint32(f.payload) != bulkWindow-initialWindow {
		t.Fatalf("expected WINDOW +%d first, got type %d %x", bulkWindow-initialWindow, f.typ, f.payload)
	}
	if f := h.next(); f.typ != tOpened {
		t.Fatalf("expected OPENED, got %d", f.typ)
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	body := bytes.Repeat([]byte("z"), bulkWindow-64<<10)
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	data := tarBuf.Bytes()
	if len(data) > bulkWindow {
		t.Fatalf("test tar of %d bytes exceeds the window", len(data))
	}
	var frames []frame
	for off := 0; off < len(data); off += 256 << 10 {
		end := off + 256<<10
		if end > len(data) {
			end = len(data)
		}
		frames = append(frames, frame{channel: 1, typ: tData, payload: data[off:end]})
	}
	sent := h.sendAsync(append(frames, frame{channel: 1, typ: tEOF})...)
	for {
		f := h.next()
		if f.typ == tError {
			t.Fatalf("error: %s", f.payload)
		}
		if f.typ == tResult {
			var res filesResult
			json.Unmarshal(f.payload, &res)
			if res.Files != 1 || res.Bytes != int64(len(body)) {
				t.Fatalf("result %+v", res)
			}
			break
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending the upload: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dest, "big")); err != nil || st.Size() != int64(len(body)) {
		t.Fatalf("big: %v %v", st, err)
	}
}
