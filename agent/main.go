// banger-agent is the guest side of banger: init duties when it boots as PID 1, and a
// server for the host's multiplexed protocol (PROTOCOL.md) over vsock, virtio-serial or,
// for tests, a Unix socket. Standard library only; built static (CGO_ENABLED=0).
//
//	banger-agent [--init]                 as PID 1 (or forced): init mode, see init.go
//	banger-agent serve --unix PATH        serve on a Unix socket (tests; no mounts, not PID 1)
//	banger-agent serve --guest [--vsock-port N]   serve vsock + virtio-serial without init duties
//	banger-agent dial-vsock CID PORT      pipe stdin/stdout to a vsock port (debugging)
//	banger-agent version
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// server holds what every connection shares.
type server struct {
	pid1     bool
	guest    bool // serving a VM (init or serve --guest), not a test socket: reidentify may change the machine
	reaper   *reaper
	shutdown func()
	logMu    sync.Mutex
	log      io.Writer
}

func (srv *server) logf(format string, a ...interface{}) {
	srv.logMu.Lock()
	defer srv.logMu.Unlock()
	fmt.Fprintf(srv.log, "banger-agent: "+format+"\n", a...)
}

func main() {
	args := os.Args[1:]
	if os.Getpid() == 1 || (len(args) > 0 && args[0] == "--init") {
		runInit(args)
		return
	}
	if len(args) == 0 {
		usage()
	}
	switch args[0] {
	case "serve":
		os.Exit(runServe(args[1:]))
	case "dial-vsock":
		os.Exit(runDialVsock(args[1:]))
	case "version", "--version":
		fmt.Println(version)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: banger-agent [--init] | serve --unix PATH | serve --guest [--vsock-port N] | dial-vsock CID PORT | version")
	os.Exit(2)
}

func runServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	unixPath := fs.String("unix", "", "listen on this Unix socket")
	guest := fs.Bool("guest", false, "listen on vsock and the virtio-serial port")
	port := fs.Uint("vsock-port", defaultVsockPort, "vsock port")
	if err := fs.Parse(args); err != nil || (*unixPath == "") == !*guest {
		fmt.Fprintln(os.Stderr, "serve: give exactly one of --unix PATH or --guest")
		return 2
	}
	srv := &server{reaper: newReaper(), log: os.Stderr}
	if *guest {
		srv.guest = true
		srv.shutdown = func() { powerOffViaInit(srv) }
		srv.startGuestTransports(uint32(*port))
		srv.ready(openConsole())
		select {}
	}
	return serveUnixSocket(srv, *unixPath)
}

func serveUnixSocket(srv *server, path string) int {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path) // a stale socket from an earlier run
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
		return 1
	}
	done := make(chan int, 1)
	stop := func(code int) {
		_ = l.Close()
		_ = os.Remove(path)
		done <- code
	}
	srv.shutdown = func() { stop(0) }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; stop(0) }()
	fmt.Fprintf(os.Stderr, "banger-agent %s ready on unix:%s\n", version, path)
	go func() {
		if err := srv.serveUnix(l); err != nil {
			srv.logf("accept: %v", err)
			stop(1)
		}
	}()
	return <-done
}

// ready prints the boot line the host (and a human reading the console) waits for.
func (srv *server) ready(console io.Writer) {
	fmt.Fprintf(console, "banger-agent %s ready\n", version)
}

func openConsole() io.Writer {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		return f
	}
	return os.Stderr
}
