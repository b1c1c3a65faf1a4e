package main

// A conn is one host connection: handshake, then a read loop that routes frames to
// channels. Each channel runs its operation in its own goroutine; writes are serialized.
// Flow control is credit based per (channel, stream), so neither side buffers more than
// initialWindow bytes per stream (PROTOCOL.md, "Flow control").

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

var errChannelClosed = errors.New("channel closed")

// maxChannels bounds what one host can have running at once (each is a goroutine or a process).
const maxChannels = 1024

// errNewConn: the magic turned up where a frame header was expected (a host reconnected
// on the serial port). The bytes are left unread so the next handshake finds them.
var errNewConn = errors.New("host started a new connection")

type conn struct {
	srv    *server
	conn   io.ReadWriteCloser
	br     *bufio.Reader
	resync bool // serial port: skip stale bytes up to the magic

	wmu    sync.Mutex
	mu     sync.Mutex
	chans  map[uint32]*channel
	broken bool
}

func newConn(srv *server, rw io.ReadWriteCloser, br *bufio.Reader, resync bool) *conn {
	if br == nil {
		br = bufio.NewReaderSize(rw, 64<<10)
	}
	return &conn{srv: srv, conn: rw, br: br, resync: resync, chans: map[uint32]*channel{}}
}

// run performs the handshake and serves frames until the host goes away or misbehaves.
func (s *conn) run() error {
	defer s.teardown()
	if err := s.handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	for {
		f, err := s.readFrame()
		if err != nil {
			if err == io.EOF || errors.Is(err, errNewConn) {
				return err
			}
			s.sendError(0, "protocol", err.Error())
			return err
		}
		if err := s.dispatch(f); err != nil {
			s.sendError(0, "protocol", err.Error())
			return err
		}
	}
}

func (s *conn) readFrame() (frame, error) {
	if s.resync {
		// A Peek error is final: a serial port reads EOF while no host is connected, and
		// reading again could pull in the next host's magic as this frame's header.
		head, err := s.br.Peek(len(magicPrefix))
		if err != nil {
			return frame{}, err
		}
		if bytes.Equal(head, magicPrefix) {
			return frame{}, errNewConn
		}
	}
	return readFrame(s.br)
}

type helloMsg struct {
	Version      int      `json:"version"`
	Client       string   `json:"client,omitempty"`
	Nonce        string   `json:"nonce,omitempty"` // the host's, echoed: marks the answer to this handshake
	Agent        string   `json:"agent,omitempty"`
	AgentVersion string   `json:"agent_version,omitempty"`
	Arch         string   `json:"arch,omitempty"`
	PID1         bool     `json:"pid1"`
	MaxPayload   int      `json:"max_payload,omitempty"`
	Window       int      `json:"window,omitempty"`
	Features     []string `json:"features,omitempty"`
}

var features = []string{"health", "exec", "pty", "files.put", "files.get", "ports", "stats", "shutdown", "tcp"}

func (s *conn) handshake() error {
	limit := 0
	if s.resync {
		limit = -1
	}
	v, err := scanForMagic(s.br, limit)
	if err != nil {
		return err
	}
	if err := s.writeRaw(magic(protoVersion)); err != nil {
		return err
	}
	if v < protoVersion {
		s.sendError(0, "version", fmt.Sprintf("agent speaks protocol %d, host offered %d", protoVersion, v))
		return fmt.Errorf("host protocol version %d unsupported", v)
	}
	f, err := readFrame(s.br)
	if err != nil {
		return err
	}
	var hello helloMsg
	if f.typ != tHello || f.channel != 0 || json.Unmarshal(f.payload, &hello) != nil {
		s.sendError(0, "protocol", "expected a HELLO frame")
		return errors.New("expected a HELLO frame")
	}
	return s.sendJSON(0, tHello, helloMsg{
		Version: protoVersion, Agent: "banger-agent", AgentVersion: version, Arch: goarch(),
		PID1: s.srv.pid1, MaxPayload: maxPayload, Window: initialWindow, Features: features, Nonce: limit64(hello.Nonce),
	})
}

func limit64(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func (s *conn) writeRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errChannelClosed
	}
	if _, err := s.conn.Write(b); err != nil {
		s.broken = true
		return err
	}
	return nil
}

func (s *conn) send(f frame) error { return s.writeRaw(encodeFrame(f)) }

func (s *conn) sendJSON(ch uint32, typ byte, v interface{}) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(frame{channel: ch, typ: typ, payload: b})
}

type errorMsg struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (s *conn) sendError(ch uint32, code, msg string) {
	_ = s.sendJSON(ch, tError, errorMsg{Code: code, Message: msg})
}

func (s *conn) lookup(id uint32) *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chans[id]
}

func (s *conn) forget(id uint32) {
	s.mu.Lock()
	delete(s.chans, id)
	s.mu.Unlock()
}

// dispatch routes one frame. Frames for unknown channels are dropped: they may race a CLOSE.
func (s *conn) dispatch(f frame) error {
	if f.typ == tOpen {
		return s.open(f)
	}
	if f.channel == 0 {
		return fmt.Errorf("frame type %d not allowed on channel 0", f.typ)
	}
	c := s.lookup(f.channel)
	if c == nil {
		return nil
	}
	switch f.typ {
	case tData:
		if f.stream != streamIn {
			return fmt.Errorf("host sent data on output stream %d", f.stream)
		}
		return c.in.push(f.payload)
	case tEOF:
		c.in.closeWrite()
	case tWindow:
		if len(f.payload) != 4 {
			return errors.New("WINDOW payload must be 4 bytes")
		}
		return c.addCredit(f.stream, binary.BigEndian.Uint32(f.payload))
	case tControl:
		c.control(f.payload)
	case tClose:
		s.forget(c.id)
		c.abort()
	default:
		return fmt.Errorf("frame type %d not allowed from the host", f.typ)
	}
	return nil
}

func (s *conn) open(f frame) error {
	if f.channel == 0 {
		return errors.New("OPEN on channel 0")
	}
	var req openReq
	if err := json.Unmarshal(f.payload, &req); err != nil {
		return fmt.Errorf("OPEN payload: %v", err)
	}
	s.mu.Lock()
	if _, dup := s.chans[f.channel]; dup {
		s.mu.Unlock()
		return fmt.Errorf("channel %d already open", f.channel)
	}
	if len(s.chans) >= maxChannels {
		s.mu.Unlock()
		s.sendError(f.channel, "invalid", fmt.Sprintf("too many open channels (limit %d)", maxChannels))
		return s.send(frame{channel: f.channel, typ: tClose})
	}
	c := newChannel(s, f.channel)
	s.chans[f.channel] = c
	s.mu.Unlock()
	go c.run(&req)
	return nil
}

// teardown aborts every channel (killing their processes) and closes the connection.
func (s *conn) teardown() {
	s.mu.Lock()
	chans := s.chans
	s.chans = map[uint32]*channel{}
	s.mu.Unlock()
	for _, c := range chans {
		c.abort()
	}
	s.wmu.Lock()
	s.broken = true
	s.wmu.Unlock()
}

// --- channels ---

type openReq struct {
	Kind  string            `json:"kind"`
	Argv  []string          `json:"argv,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
	User  string            `json:"user,omitempty"`
	Stdin bool              `json:"stdin,omitempty"`
	Tty   *winsize          `json:"tty,omitempty"`
	Path  string            `json:"path,omitempty"`
	UID   *int              `json:"uid,omitempty"`
	GID   *int              `json:"gid,omitempty"`
	Port  int               `json:"port,omitempty"`
	// Sessions (sessions.go).
	Name   string `json:"name,omitempty"`
	Follow bool   `json:"follow,omitempty"`
	Data   []byte `json:"data,omitempty"` // base64 in JSON
	Signal int    `json:"signal,omitempty"`
	Force  bool   `json:"force,omitempty"`
	// reidentify (identity.go).
	Hostname   string         `json:"hostname,omitempty"`
	Seed       []byte         `json:"seed,omitempty"` // base64 in JSON
	TimeUnixMs int64          `json:"time_unix_ms,omitempty"`
	Net        *reidentifyNet `json:"net,omitempty"`
	// fs.* (fs.go, fsio.go, fswatch.go).
	Dest      string `json:"dest,omitempty"`
	Depth     int    `json:"depth,omitempty"`
	Limit     int    `json:"limit,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

type winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

type controlMsg struct {
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"`
	Rows   uint16 `json:"rows,omitempty"`
	Cols   uint16 `json:"cols,omitempty"`
}

// opError carries a protocol error code ("not_found", "invalid", ...) to the host.
type opError struct {
	code string
	msg  string
}

func (e *opError) Error() string { return e.msg }

func invalid(format string, a ...interface{}) error {
	return &opError{"invalid", fmt.Sprintf(format, a...)}
}

func errorCode(err error) string {
	var oe *opError
	switch {
	case errors.As(err, &oe):
		return oe.code
	case errors.Is(err, os.ErrNotExist):
		return "not_found"
	case errors.Is(err, os.ErrPermission):
		return "permission_denied"
	}
	return "failed"
}

type channel struct {
	id uint32
	s  *conn

	mu        sync.Mutex
	cond      *sync.Cond
	credit    [numStreams]int64
	aborted   bool
	onAbort   func()
	onControl func(controlMsg) error
	in        inbound
}

func newChannel(s *conn, id uint32) *channel {
	c := &channel{id: id, s: s}
	c.cond = sync.NewCond(&c.mu)
	for i := range c.credit {
		c.credit[i] = initialWindow
	}
	c.in = inbound{c: c, size: initialWindow, window: initialWindow}
	return c
}

type handler func(c *channel, req *openReq) (interface{}, error)

func (c *channel) run(req *openReq) {
	h := handlers[req.Kind]
	var result interface{}
	var err error
	if h == nil {
		err = &opError{"unsupported", fmt.Sprintf("unknown channel kind %q", req.Kind)}
	} else {
		result, err = h(c, req)
	}
	c.finish(result, err)
}

// finish sends the outcome and CLOSE unless the host already closed the channel.
func (c *channel) finish(result interface{}, err error) {
	if c.isAborted() {
		return
	}
	if err != nil {
		c.s.sendError(c.id, errorCode(err), err.Error())
	} else {
		if result == nil {
			result = struct{}{}
		}
		_ = c.s.sendJSON(c.id, tResult, result)
	}
	_ = c.s.send(frame{channel: c.id, typ: tClose})
	c.s.forget(c.id)
}

func (c *channel) isAborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

func (c *channel) abort() {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return
	}
	c.aborted = true
	hook := c.onAbort
	c.cond.Broadcast()
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// setHooks installs the abort and control callbacks; an already-aborted channel runs abort now.
func (c *channel) setHooks(onAbort func(), onControl func(controlMsg) error) {
	c.mu.Lock()
	c.onAbort, c.onControl = onAbort, onControl
	aborted := c.aborted
	c.mu.Unlock()
	if aborted && onAbort != nil {
		onAbort()
	}
}

func (c *channel) control(payload []byte) {
	var msg controlMsg
	if err := json.Unmarshal(payload, &msg); err != nil {
		return
	}
	c.mu.Lock()
	fn := c.onControl
	c.mu.Unlock()
	if fn != nil {
		_ = fn(msg)
	}
}

func (c *channel) opened(v interface{}) error { return c.s.sendJSON(c.id, tOpened, v) }

func (c *channel) addCredit(stream byte, n uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.credit[stream] += int64(n)
	if c.credit[stream] > 1<<31 {
		return errors.New("flow-control window overflow")
	}
	c.cond.Broadcast()
	return nil
}

// write sends p on an output stream, waiting for credit; it fails once the channel is closed.
func (c *channel) write(stream byte, p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		for c.credit[stream] == 0 && !c.aborted {
			c.cond.Wait()
		}
		if c.aborted {
			c.mu.Unlock()
			return written, errChannelClosed
		}
		n := len(p)
		if n > dataChunk {
			n = dataChunk
		}
		if int64(n) > c.credit[stream] {
			n = int(c.credit[stream])
		}
		c.credit[stream] -= int64(n)
		c.mu.Unlock()
		if err := c.s.send(frame{channel: c.id, typ: tData, stream: stream, payload: p[:n]}); err != nil {
			return written, err
		}
		p = p[n:]
		written += n
	}
	return written, nil
}

func (c *channel) eof(stream byte) {
	if !c.isAborted() {
		_ = c.s.send(frame{channel: c.id, typ: tEOF, stream: stream})
	}
}

// writer adapts one output stream to io.Writer.
func (c *channel) writer(stream byte) io.Writer { return streamWriter{c, stream} }

type streamWriter struct {
	c      *channel
	stream byte
}

func (w streamWriter) Write(p []byte) (int, error) { return w.c.write(w.stream, p) }

// inbound buffers host→guest bytes of one channel; bounded by the credit granted to the host.
// It keeps the DATA payloads themselves (readFrame allocates each one), so bytes are not
// copied again on the way from the connection to the consumer.
type inbound struct {
	c        *channel
	chunks   [][]byte
	buffered int
	size     int // the window this channel grants: initialWindow, or more for bulk input
	window   int // credit the host still holds
	consumed int // bytes read but not yet granted back
	eof      bool
	stopped  bool // reader gave up (process exited)
}

func (in *inbound) push(p []byte) error {
	c := in.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.eof {
		return errors.New("data after EOF")
	}
	if len(p) > in.window {
		return errors.New("host exceeded its flow-control window")
	}
	in.window -= len(p)
	if !in.stopped && len(p) > 0 {
		in.chunks = append(in.chunks, p)
		in.buffered += len(p)
	}
	c.cond.Broadcast()
	return nil
}

// grow raises this stream's window to size by granting the host the difference at once.
// Used by channels that move bulk data (files.put): a bigger window keeps the link busy
// while the consumer writes to disk. Credit beyond the initial window is plain protocol:
// the host only ever spends what WINDOW frames gave it.
func (in *inbound) grow(size int) {
	c := in.c
	c.mu.Lock()
	extra := size - in.size
	if extra <= 0 || in.eof || in.stopped {
		c.mu.Unlock()
		return
	}
	in.size = size
	in.window += extra
	c.mu.Unlock()
	c.sendWindow(streamIn, extra)
}

func (in *inbound) closeWrite() {
	in.c.mu.Lock()
	in.eof = true
	in.c.cond.Broadcast()
	in.c.mu.Unlock()
}

// stop makes pending and future reads return EOF and drops what is buffered.
func (in *inbound) stop() {
	in.c.mu.Lock()
	in.stopped = true
	in.chunks = nil
	in.buffered = 0
	in.c.cond.Broadcast()
	in.c.mu.Unlock()
}

func (in *inbound) Read(p []byte) (int, error) {
	c := in.c
	c.mu.Lock()
	for in.buffered == 0 && !in.eof && !in.stopped && !c.aborted {
		c.cond.Wait()
	}
	if c.aborted {
		c.mu.Unlock()
		return 0, errChannelClosed
	}
	if in.buffered == 0 {
		c.mu.Unlock()
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && len(in.chunks) > 0 {
		m := copy(p[n:], in.chunks[0])
		n += m
		if m == len(in.chunks[0]) {
			in.chunks[0] = nil
			in.chunks = in.chunks[1:]
		} else {
			in.chunks[0] = in.chunks[0][m:]
		}
	}
	in.buffered -= n
	if in.buffered == 0 {
		in.chunks = nil
	}
	in.consumed += n
	grant := 0
	// Grant credit back in batches, or at once when drained so the host never stalls.
	if in.consumed >= in.size/4 || in.buffered == 0 {
		grant = in.consumed
		in.window += grant
		in.consumed = 0
	}
	c.mu.Unlock()
	if grant > 0 {
		c.sendWindow(streamIn, grant)
	}
	return n, nil
}

func (c *channel) sendWindow(stream byte, n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	_ = c.s.send(frame{channel: c.id, typ: tWindow, stream: stream, payload: b[:]})
}

var handlers = map[string]handler{}

func init() {
	handlers["health"] = handleHealth
	handlers["exec"] = handleExec
	handlers["files.put"] = handlePut
	handlers["files.get"] = handleGet
	handlers["ports"] = handlePorts
	handlers["stats"] = handleStats
	handlers["shutdown"] = handleShutdown
	handlers["tcp"] = handleTCP
}

func isEIO(err error) bool { return errors.Is(err, syscall.EIO) }
