package main

// Transports: AF_VSOCK (Firecracker hybrid vsock and vhost-vsock look the same from the
// guest), the virtio-serial port named "banger.agent", and a Unix socket for tests.
// The standard library has no AF_VSOCK, so the socket calls are made by hand.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	afVsock          = 40
	vmaddrCIDAny     = 0xFFFFFFFF
	defaultVsockPort = 52
	serialPortName   = "banger.agent"
)

// sockaddrVM mirrors struct sockaddr_vm from <linux/vm_sockets.h> (16 bytes).
type sockaddrVM struct {
	family    uint16
	reserved1 uint16
	port      uint32
	cid       uint32
	flags     uint8
	zero      [3]uint8
}

// listenVsock binds AF_VSOCK on port for any CID and returns the listening fd.
func listenVsock(port uint32) (int, error) {
	fd, _, errno := syscall.RawSyscall(syscall.SYS_SOCKET, afVsock, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if errno != 0 {
		return -1, fmt.Errorf("vsock socket: %w", errno)
	}
	sa := sockaddrVM{family: afVsock, port: port, cid: vmaddrCIDAny}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_BIND, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); errno != 0 {
		syscall.Close(int(fd))
		return -1, fmt.Errorf("vsock bind port %d: %w", port, errno)
	}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_LISTEN, fd, 16, 0); errno != 0 {
		syscall.Close(int(fd))
		return -1, fmt.Errorf("vsock listen: %w", errno)
	}
	return int(fd), nil
}

// serveVsock accepts connections forever; each is its own connection (strict handshake).
func (srv *server) serveVsock(lfd int) {
	for {
		var sa sockaddrVM
		l := uint32(unsafe.Sizeof(sa))
		// Blocking accept: this goroutine owns its thread, which is fine for one listener.
		nfd, _, errno := syscall.Syscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&sa)),
			uintptr(unsafe.Pointer(&l)), syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0, 0)
		if errno == syscall.EINTR || errno == syscall.ECONNABORTED {
			continue
		}
		if errno != 0 {
			srv.logf("vsock accept: %v", errno)
			time.Sleep(time.Second)
			continue
		}
		conn := os.NewFile(nfd, "vsock")
		go srv.serveConn(conn, "vsock")
	}
}

func (srv *server) serveConn(conn io.ReadWriteCloser, what string) {
	defer conn.Close()
	s := newConn(srv, conn, nil, false)
	if err := s.run(); err != nil && err != io.EOF {
		srv.logf("%s connection ended: %v", what, err)
	}
}

func (srv *server) serveUnix(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go srv.serveConn(conn, "unix")
	}
}

// findSerialPort locates the virtio-serial port by name. udev makes
// /dev/virtio-ports/<name>, but as init there is no udev, so sysfs is read directly.
func findSerialPort(sysRoot, devRoot string) string {
	if p := filepath.Join(devRoot, "virtio-ports", serialPortName); exists(p) {
		return p
	}
	names, _ := filepath.Glob(filepath.Join(sysRoot, "class", "virtio-ports", "*", "name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == serialPortName {
			return filepath.Join(devRoot, filepath.Base(filepath.Dir(n)))
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serveSerial runs connections on the serial port one after another. The port is one byte
// stream that outlives host connections: EOF means the host went away, and every
// connection starts by scanning for the magic, so a reconnecting host resets the connection.
func (srv *server) serveSerial(path string) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		srv.logf("serial %s: %v", path, err)
		return
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		s := newConn(srv, nopCloser{f}, br, true)
		err := s.run()
		if err == io.EOF || errors.Is(err, io.EOF) {
			// Host not connected: reads return EOF at once, so poll gently.
			time.Sleep(200 * time.Millisecond)
		} else if err != nil && !errors.Is(err, errNewConn) {
			srv.logf("serial connection ended: %v", err)
		}
	}
}

// nopCloser keeps the serial port open across connections.
type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }

// startGuestTransports listens on every transport that exists, retrying for ones that
// appear late (a module still loading). Returns once at least one is up or after a wait.
func (srv *server) startGuestTransports(port uint32) {
	ready := make(chan string, 2)
	go func() {
		for attempt := 0; ; attempt++ {
			fd, err := listenVsock(port)
			if err == nil {
				ready <- fmt.Sprintf("vsock port %d", port)
				srv.serveVsock(fd)
				return
			}
			if attempt == 0 {
				srv.logf("%v (will retry)", err)
			}
			time.Sleep(backoff(attempt))
		}
	}()
	go func() {
		for attempt := 0; ; attempt++ {
			if p := findSerialPort("/sys", "/dev"); p != "" {
				ready <- "virtio-serial " + p
				srv.serveSerial(p)
				return
			}
			time.Sleep(backoff(attempt))
		}
	}()
	select {
	case what := <-ready:
		srv.logf("listening on %s", what)
	case <-time.After(10 * time.Second):
		srv.logf("no vsock or virtio-serial port %q yet; still trying", serialPortName)
	}
}

func backoff(attempt int) time.Duration {
	d := time.Duration(50*(attempt+1)) * time.Millisecond
	if d > time.Second {
		d = time.Second
	}
	return d
}

// dialVsock connects to (cid, port): the guest side of `banger-agent dial-vsock`, a
// socat-like pipe used to debug the vsock path from inside a guest (and by the tests,
// which reach the listener through the kernel's vsock loopback at CID 1).
func dialVsock(cid, port uint32) (*os.File, error) {
	fd, _, errno := syscall.RawSyscall(syscall.SYS_SOCKET, afVsock, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if errno != 0 {
		return nil, fmt.Errorf("vsock socket: %w", errno)
	}
	sa := sockaddrVM{family: afVsock, port: port, cid: cid}
	if _, _, errno = syscall.Syscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); errno != 0 {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, errno)
	}
	return os.NewFile(fd, "vsock"), nil
}

func runDialVsock(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: banger-agent dial-vsock CID PORT")
		return 2
	}
	cid, err1 := strconv.ParseUint(args[0], 10, 32)
	port, err2 := strconv.ParseUint(args[1], 10, 32)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "dial-vsock: CID and PORT must be numbers")
		return 2
	}
	conn, err := dialVsock(uint32(cid), uint32(port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
		return 1
	}
	go func() {
		_, _ = io.Copy(conn, os.Stdin)
		_ = syscall.Shutdown(int(conn.Fd()), syscall.SHUT_WR)
	}()
	_, _ = io.Copy(os.Stdout, conn)
	return 0
}
