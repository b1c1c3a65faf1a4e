package main

// exec channels: start a process (pipes or a PTY), stream its output with credit-based
// flow control, feed stdin, deliver signals and resizes, report how it ended.

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputGrace: after the process exits, how long background children may keep its
// output open before the agent stops reading and reports the exit anyway.
const outputGrace = 2 * time.Second

type exitResult struct {
	ExitCode *int `json:"exit_code,omitempty"`
	Signal   *int `json:"signal,omitempty"`
}

func handleExec(c *channel, req *openReq) (interface{}, error) {
	if len(req.Argv) == 0 {
		return nil, invalid("exec: argv is empty")
	}
	path, env, cwd, acct, err := prepareCommand(req)
	if err != nil {
		return nil, err
	}
	var p *proc
	if req.Tty != nil {
		p, err = startPTY(c.s.srv.reaper, path, req, env, cwd, acct)
	} else {
		p, err = startPiped(c.s.srv.reaper, path, req, env, cwd, acct)
	}
	if err != nil {
		return nil, startError(req.Argv[0], err)
	}
	return p.serve(c)
}

// proc is a started process plus the guest-side ends of its stdio.
type proc struct {
	pid     int
	status  <-chan syscall.WaitStatus
	stdin   io.WriteCloser // nil when stdin is /dev/null
	outputs []*os.File     // index 0 → stdout stream, 1 → stderr stream
	pty     *os.File
	closeIn bool // close stdin on host EOF (pipes); a PTY ignores it
}

func (p *proc) serve(c *channel) (interface{}, error) {
	c.setHooks(func() { killGroup(p.pid, syscall.SIGKILL) }, func(m controlMsg) error { return p.control(m) })
	_ = c.opened(map[string]int{"pid": p.pid})
	var wg sync.WaitGroup
	for i, f := range p.outputs {
		wg.Add(1)
		go func(f *os.File, stream byte) {
			defer wg.Done()
			_, _ = copyOutput(c.writer(stream), f)
			c.eof(stream)
		}(f, byte(streamOut+i))
	}
	if p.stdin != nil {
		go func() {
			_, _ = io.Copy(p.stdin, &c.in)
			if p.closeIn {
				_ = p.stdin.Close()
			}
		}()
	}
	ws := <-p.status
	c.in.stop()
	waitOrTimeout(&wg, outputGrace)
	for _, f := range p.outputs {
		_ = f.Close()
	}
	if p.stdin != nil && p.closeIn {
		_ = p.stdin.Close()
	}
	if p.pty != nil {
		_ = p.pty.Close()
	}
	return statusResult(ws), nil
}

// copyOutput copies until EOF; EIO from a PTY master means the slave side is gone.
func copyOutput(w io.Writer, r io.Reader) (int64, error) {
	n, err := io.Copy(w, r)
	if isEIO(err) {
		err = nil
	}
	return n, err
}

func waitOrTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func statusResult(ws syscall.WaitStatus) exitResult {
	if ws.Signaled() {
		s := int(ws.Signal())
		return exitResult{Signal: &s}
	}
	code := ws.ExitStatus()
	return exitResult{ExitCode: &code}
}

func (p *proc) control(m controlMsg) error {
	switch m.Op {
	case "signal":
		if m.Signal <= 0 || m.Signal > 64 {
			return invalid("bad signal %d", m.Signal)
		}
		return killGroup(p.pid, syscall.Signal(m.Signal))
	case "resize":
		if p.pty == nil {
			return invalid("resize needs a tty")
		}
		return setWinsize(p.pty, winsize{Rows: m.Rows, Cols: m.Cols})
	}
	return invalid("unknown control op %q", m.Op)
}

// killGroup signals the process group (the command and its children, like a terminal's
// Ctrl-C), falling back to the process alone.
func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return invalid("refusing to signal pid %d", pid) // -1 or 1 would hit everything or init
	}
	if err := syscall.Kill(-pid, sig); err == nil {
		return nil
	}
	return syscall.Kill(pid, sig)
}

func startPiped(r *reaper, path string, req *openReq, env []string, cwd string, acct *account) (*proc, error) {
	var files []*os.File
	var parentEnds []*os.File
	cleanup := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	p := &proc{closeIn: true}
	if req.Stdin {
		rd, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		files = append(files, rd)
		p.stdin = wr
		parentEnds = append(parentEnds, wr)
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		files = append(files, null)
	}
	for i := 0; i < 2; i++ {
		rd, wr, err := os.Pipe()
		if err != nil {
			cleanup()
			closeAll(parentEnds)
			return nil, err
		}
		files = append(files, wr)
		p.outputs = append(p.outputs, rd)
		parentEnds = append(parentEnds, rd)
	}
	attr := &os.ProcAttr{Dir: cwd, Env: env, Files: files,
		Sys: &syscall.SysProcAttr{Setpgid: true, Credential: acct.credential()}}
	pid, st, err := r.start(path, req.Argv, attr)
	cleanup()
	if err != nil {
		closeAll(parentEnds)
		return nil, err
	}
	p.pid, p.status = pid, st
	return p, nil
}

func startPTY(r *reaper, path string, req *openReq, env []string, cwd string, acct *account) (*proc, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	if err := setWinsize(master, *req.Tty); err != nil {
		master.Close()
		slave.Close()
		return nil, err
	}
	if acct.uid != uint32(os.Getuid()) {
		_ = slave.Chown(int(acct.uid), -1)
	}
	attr := &os.ProcAttr{Dir: cwd, Env: env, Files: []*os.File{slave, slave, slave},
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: acct.credential()}}
	pid, st, err := r.start(path, req.Argv, attr)
	slave.Close()
	if err != nil {
		master.Close()
		return nil, err
	}
	return &proc{pid: pid, status: st, stdin: master, outputs: []*os.File{master}, pty: master}, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// openPTY opens a master/slave pair via /dev/ptmx (unlock + get the pts number).
func openPTY() (*os.File, *os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	err = ioctlFile(master, syscall.TIOCSPTLCK, unsafe.Pointer(new(int32)))
	if err == nil {
		err = ioctlFile(master, syscall.TIOCGPTN, unsafe.Pointer(&n))
	}
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty setup: %w", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

func setWinsize(f *os.File, ws winsize) error {
	if ws.Rows == 0 || ws.Cols == 0 {
		return invalid("tty size must be at least 1x1")
	}
	w := [4]uint16{ws.Rows, ws.Cols, 0, 0}
	return ioctlFile(f, syscall.TIOCSWINSZ, unsafe.Pointer(&w))
}

// ioctlFile runs an ioctl without File.Fd(), which would switch the fd to blocking mode.
func ioctlFile(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// buildEnv starts from a clean, predictable environment; the host's values win.
func buildEnv(extra map[string]string, acct *account, tty bool) []string {
	env := map[string]string{"PATH": defaultPath, "HOME": acct.home}
	if acct.name != "" {
		env["USER"], env["LOGNAME"] = acct.name, acct.name
	}
	if acct.shell != "" {
		env["SHELL"] = acct.shell
	}
	if tty {
		env["TERM"] = "xterm-256color"
	}
	for k, v := range extra {
		if k != "" && !strings.ContainsAny(k, "=\x00") && !strings.Contains(v, "\x00") {
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return kv[len(key)+1:]
		}
	}
	return ""
}
