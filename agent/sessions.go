package main

// Named detached sessions: long-running processes owned by the agent itself, not by the
// host connection that started them. Their output goes into a bounded ring buffer (the
// scrollback), which attach and logs channels replay and then follow. Closing a channel,
// or the host going away, never touches the process; only session.kill does.

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"
)

const (
	// scrollbackSize bounds the output kept per session.
	scrollbackSize = 1 << 20
	// maxSessions bounds how many sessions (running or exited) one guest keeps.
	maxSessions = 64
	// sendTimeout: how long session.send waits for a process that does not read its input.
	sendTimeout = 10 * time.Second
)

var sessionNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// guestSession is one detached process and its scrollback.
type guestSession struct {
	name    string
	argv    []string
	pid     int
	tty     bool
	started time.Time

	mu      sync.Mutex
	out     ring
	changed chan struct{} // closed and replaced whenever output, state or size changes
	exited  bool
	status  exitResult
	ended   time.Time
	drained bool // the output pumps are done: nothing more will be written

	proc *proc
	inMu sync.Mutex // one writer at a time on the process's input
}

// sessionTable holds every session of this agent process, across host connections.
type sessionTable struct {
	mu sync.Mutex
	m  map[string]*guestSession
}

var guestSessions = &sessionTable{m: map[string]*guestSession{}}

func init() {
	handlers["session.start"] = handleSessionStart
	handlers["session.list"] = handleSessionList
	handlers["session.attach"] = func(c *channel, req *openReq) (interface{}, error) { return streamSession(c, req, true) }
	handlers["session.logs"] = func(c *channel, req *openReq) (interface{}, error) { return streamSession(c, req, req.Follow) }
	handlers["session.send"] = handleSessionSend
	handlers["session.kill"] = handleSessionKill
	handlers["session.rm"] = handleSessionRemove
	features = append(features, "sessions")
}

// sessionInfo is how a session is reported (session.list entries, attach/logs RESULT).
type sessionInfo struct {
	Name     string   `json:"name"`
	PID      int      `json:"pid"`
	Argv     []string `json:"argv"`
	TTY      bool     `json:"tty"`
	Started  string   `json:"started"`
	State    string   `json:"state"` // running | exited
	Ended    string   `json:"ended,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Signal   *int     `json:"signal,omitempty"`
	Bytes    int64    `json:"bytes"` // output produced so far (the scrollback keeps the last 1 MiB)
}

func (s *guestSession) info() sessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := sessionInfo{Name: s.name, PID: s.pid, Argv: s.argv, TTY: s.tty, Started: s.started.UTC().Format(time.RFC3339), State: "running", Bytes: s.out.total}
	if s.exited {
		in.State, in.Ended = "exited", s.ended.UTC().Format(time.RFC3339)
		in.ExitCode, in.Signal = s.status.ExitCode, s.status.Signal
	}
	return in
}

// notifyLocked wakes every reader waiting on this session; s.mu must be held.
func (s *guestSession) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Write appends process output to the scrollback (the pumps' io.Writer).
func (s *guestSession) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.out.write(p)
	s.notifyLocked()
	s.mu.Unlock()
	return len(p), nil
}

// readFrom returns output from absolute offset off (clamped to what is kept), or, when
// there is none yet, whether the session is over and a channel to wait on.
func (s *guestSession) readFrom(off int64, buf []byte) (n int, next int64, over bool, wait <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, next = s.out.readAt(buf, off)
	return n, next, s.drained && n == 0, s.changed
}

func (t *sessionTable) get(name string) (*guestSession, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[name]
	if s == nil {
		return nil, &opError{"not_found", fmt.Sprintf("no session %q", name)}
	}
	return s, nil
}

func (t *sessionTable) list() []*guestSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*guestSession, 0, len(t.m))
	for _, s := range t.m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out
}

// reserve claims a name before the process starts, so two starts cannot both win it.
func (t *sessionTable) reserve(s *guestSession) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.m[s.name]; dup {
		return &opError{"exists", fmt.Sprintf("session %q already exists", s.name)}
	}
	if len(t.m) >= maxSessions {
		return invalid("too many sessions (limit %d); remove exited ones with session.rm", maxSessions)
	}
	t.m[s.name] = s
	return nil
}

func (t *sessionTable) remove(name string) {
	t.mu.Lock()
	delete(t.m, name)
	t.mu.Unlock()
}

func handleSessionStart(c *channel, req *openReq) (interface{}, error) {
	if !sessionNameRE.MatchString(req.Name) {
		return nil, invalid("session name %q must match %s", req.Name, sessionNameRE)
	}
	if len(req.Argv) == 0 {
		return nil, invalid("session.start: argv is empty")
	}
	s := &guestSession{name: req.Name, argv: req.Argv, tty: req.Tty != nil, changed: make(chan struct{}), out: ring{size: scrollbackSize}}
	if err := guestSessions.reserve(s); err != nil {
		return nil, err
	}
	p, err := startSessionProcess(c.s.srv.reaper, req)
	if err != nil {
		guestSessions.remove(s.name)
		return nil, err
	}
	s.proc, s.pid, s.started = p, p.pid, time.Now()
	go s.supervise()
	return map[string]interface{}{"name": s.name, "pid": s.pid}, nil
}

// startSessionProcess is exec's start, always with an input (pipe or PTY) to send to.
func startSessionProcess(r *reaper, req *openReq) (*proc, error) {
	path, env, cwd, acct, err := prepareCommand(req)
	if err != nil {
		return nil, err
	}
	withInput := *req
	withInput.Stdin = true
	var p *proc
	if req.Tty != nil {
		p, err = startPTY(r, path, &withInput, env, cwd, acct)
	} else {
		p, err = startPiped(r, path, &withInput, env, cwd, acct)
	}
	if err != nil {
		return nil, startError(req.Argv[0], err)
	}
	return p, nil
}

// supervise copies output into the scrollback until the process exits (plus a grace
// period for background children holding the output open), then records the status.
func (s *guestSession) supervise() {
	p := s.proc
	var wg sync.WaitGroup
	for _, f := range p.outputs {
		wg.Add(1)
		go func(f *os.File) {
			defer wg.Done()
			_, _ = copyOutput(s, f)
		}(f)
	}
	ws := <-p.status
	s.mu.Lock()
	s.exited, s.status, s.ended = true, statusResult(ws), time.Now()
	s.notifyLocked()
	s.mu.Unlock()
	waitOrTimeout(&wg, outputGrace)
	closeAll(p.outputs)
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	s.mu.Lock()
	s.drained = true
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *guestSession) isExited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// writeInput writes to the process's input, giving up when stop says so (checked twice a
// second) so a process that never reads cannot pin a goroutine forever.
func (s *guestSession) writeInput(p []byte, stop func() bool) error {
	s.inMu.Lock()
	defer s.inMu.Unlock()
	in, ok := s.proc.stdin.(*os.File)
	if !ok {
		return invalid("session %q takes no input", s.name)
	}
	for len(p) > 0 {
		if s.isExited() {
			return invalid("session %q has exited", s.name)
		}
		_ = in.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := in.Write(p)
		p = p[n:]
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return &opError{"failed", fmt.Sprintf("session %q input: %v", s.name, err)}
		}
		if err != nil && stop() {
			return &opError{"failed", fmt.Sprintf("session %q is not reading its input", s.name)}
		}
	}
	return nil
}

// streamSession serves attach (follow, input, resize, signals) and logs (optionally follow):
// the scrollback first, then live output; the RESULT is the session's state at the end.
// Closing the channel detaches; the process keeps running.
func streamSession(c *channel, req *openReq, follow bool) (interface{}, error) {
	s, err := guestSessions.get(req.Name)
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var once sync.Once
	detach := func() { once.Do(func() { close(stop) }) }
	interactive := req.Kind == "session.attach"
	var onControl func(controlMsg) error
	if interactive {
		onControl = func(m controlMsg) error { return s.control(m) }
	}
	c.setHooks(detach, onControl)
	_ = c.opened(map[string]interface{}{"pid": s.pid, "tty": s.tty})
	if interactive {
		go s.forwardInput(c, stop)
	}
	buf := make([]byte, dataChunk)
	var off int64
	for {
		n, next, over, wait := s.readFrom(off, buf)
		if n > 0 {
			if _, err := c.write(streamOut, buf[:n]); err != nil {
				return nil, err
			}
			off = next
			continue
		}
		if over || !follow {
			break
		}
		select {
		case <-wait:
		case <-stop:
			return nil, errChannelClosed
		}
	}
	c.eof(streamOut)
	c.in.stop()
	return s.info(), nil
}

// forwardInput feeds what the host types into the session until the channel ends.
// The host's EOF only ends forwarding: detaching never closes the session's input.
func (s *guestSession) forwardInput(c *channel, stop chan struct{}) {
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	buf := make([]byte, dataChunk)
	for {
		n, err := c.in.Read(buf)
		if n > 0 && s.writeInput(buf[:n], stopped) != nil {
			c.in.stop() // drop the rest; the host's credit keeps flowing back
		}
		if err != nil {
			return
		}
	}
}

func (s *guestSession) control(m controlMsg) error {
	if s.isExited() {
		return invalid("session %q has exited", s.name)
	}
	return s.proc.control(m)
}

func handleSessionList(c *channel, req *openReq) (interface{}, error) {
	all := guestSessions.list()
	infos := make([]sessionInfo, 0, len(all))
	for _, s := range all {
		infos = append(infos, s.info())
	}
	return map[string]interface{}{"sessions": infos}, nil
}

func handleSessionSend(c *channel, req *openReq) (interface{}, error) {
	s, err := guestSessions.get(req.Name)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(sendTimeout)
	if err := s.writeInput(req.Data, func() bool { return c.isAborted() || time.Now().After(deadline) }); err != nil {
		return nil, err
	}
	return map[string]int{"bytes": len(req.Data)}, nil
}

// handleSessionKill signals a running session's process group (SIGTERM by default);
// killing a session that already exited removes it.
func handleSessionKill(c *channel, req *openReq) (interface{}, error) {
	s, err := guestSessions.get(req.Name)
	if err != nil {
		return nil, err
	}
	if s.isExited() {
		guestSessions.remove(s.name)
		return map[string]bool{"removed": true}, nil
	}
	sig := req.Signal
	if sig == 0 {
		sig = int(syscall.SIGTERM)
	}
	if err := s.control(controlMsg{Op: "signal", Signal: sig}); err != nil {
		return nil, err
	}
	return map[string]bool{"removed": false}, nil
}

// handleSessionRemove forgets an exited session; force kills a running one first.
func handleSessionRemove(c *channel, req *openReq) (interface{}, error) {
	s, err := guestSessions.get(req.Name)
	if err != nil {
		return nil, err
	}
	if !s.isExited() {
		if !req.Force {
			return nil, invalid("session %q is still running; kill it first or remove with force", s.name)
		}
		_ = killGroup(s.pid, syscall.SIGKILL)
	}
	guestSessions.remove(s.name)
	return map[string]bool{"removed": true}, nil
}

// ring keeps the last `size` bytes written, and how many were written in all, so readers
// address output by absolute offset and notice when what they wanted was overwritten.
type ring struct {
	size  int
	data  []byte // grows up to size, then wraps
	head  int    // once full: index of the oldest byte (and of the next write)
	total int64  // bytes ever written
}

func (r *ring) write(p []byte) {
	r.total += int64(len(p))
	if len(p) >= r.size {
		r.data = append(r.data[:0], p[len(p)-r.size:]...)
		r.head = 0
		return
	}
	if room := r.size - len(r.data); room > 0 {
		n := len(p)
		if n > room {
			n = room
		}
		r.data = append(r.data, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.data[r.head:], p)
		p = p[n:]
		r.head = (r.head + n) % r.size
	}
}

// start is the absolute offset of the oldest byte still kept.
func (r *ring) start() int64 { return r.total - int64(len(r.data)) }

// readAt copies bytes from absolute offset off (or the oldest kept, if off is older) into
// buf and returns how many and the offset after them.
func (r *ring) readAt(buf []byte, off int64) (int, int64) {
	if off < r.start() {
		off = r.start()
	}
	if off >= r.total || len(buf) == 0 {
		return 0, off
	}
	avail := r.total - off
	if avail > int64(len(buf)) {
		avail = int64(len(buf))
	}
	i := (r.head + int(off-r.start())) % len(r.data)
	n := copy(buf[:avail], r.data[i:])
	if int64(n) < avail {
		n += copy(buf[n:avail], r.data[:int(avail)-n])
	}
	return n, off + int64(n)
}
