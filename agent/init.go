package main

// PID 1 duties. Kernel command line parameters (all optional):
//
//	banger.modules=a,b    kernel modules to load, in order (after /lib/banger/modules.list)
//	banger.root=/dev/vda  we are the initramfs init: mount this and switch_root to it
//	banger.rootfstype=    filesystem of banger.root (default ext4); "ro" on the cmdline mounts it read-only
//	banger.rootflags=     mount data for banger.root
//	banger.agent=         an agent inside the real root to exec after switch_root (default: this
//	                      initramfs agent goes on; the image's /sbin/banger-agent serves boots
//	                      without an initramfs, init=/sbin/banger-agent)
//	banger.hostname=      hostname
//	banger.ip=A/P banger.gw=G banger.dns=IP[,IP] banger.iface=eth0   static networking
//	banger.exec_init=     hand PID 1 to the image's init; the agent keeps serving as its child
//	banger.sshd=1         start sshd (host keys generated if missing)
//	banger.vsock_port=52  vsock port to listen on
//	banger.poweroff=reboot  stop the VM with reboot(RESTART) instead of POWER_OFF

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	modulesDir  = "/lib/banger/modules"
	modulesList = "/lib/banger/modules.list"
	selfExe     = "/proc/self/exe"
)

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var earlyMounts = []mountSpec{
	{"proc", "/proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", syscall.MS_NOSUID, "mode=0755"},
}

var lateMounts = []mountSpec{
	{"devpts", "/dev/pts", "devpts", syscall.MS_NOSUID | syscall.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
	{"tmpfs", "/tmp", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=0755"},
}

func runInit(args []string) {
	switched := len(args) > 1 && args[1] == "--switched"
	console := openConsole()
	srv := &server{pid1: os.Getpid() == 1, guest: true, log: console}
	mountAll(srv, earlyMounts)
	ensureStdio()
	cmd := parseCmdline(readFileString("/proc/cmdline"))
	loadModules(srv, cmd)
	if root := cmd["banger.root"]; root != "" && !switched {
		err := switchRoot(cmd) // returns only on failure
		srv.logf("switch_root to %s failed: %v", root, err)
		powerOff(srv, cmd)
	}
	mountAll(srv, lateMounts)
	linkDevFiles()
	if h := cmd["banger.hostname"]; h != "" {
		if err := syscall.Sethostname([]byte(h)); err != nil {
			srv.logf("hostname: %v", err)
		}
	}
	if err := configureNetwork(cmd, "/etc/resolv.conf"); err != nil {
		srv.logf("network: %v", err)
	}
	port := uint32(defaultVsockPort)
	if p, err := strconv.ParseUint(cmd["banger.vsock_port"], 10, 32); err == nil {
		port = uint32(p)
	}
	if initPath := cmd["banger.exec_init"]; initPath != "" {
		handOffToInit(srv, initPath, port) // returns only on failure
	}
	srv.reaper = newReaper()
	srv.shutdown = func() { powerOff(srv, cmd) }
	watchPowerSignals(srv, cmd)
	if cmd["banger.sshd"] == "1" {
		startSSHD(srv)
	}
	srv.startGuestTransports(port)
	srv.ready(console)
	select {}
}

// ensureStdio points fds 0-2 at /dev/console when the kernel could not (an initramfs
// without /dev/console), so children and the image's init inherit a working console.
func ensureStdio() {
	for fd := 0; fd <= 2; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) == nil {
			continue
		}
		con, err := syscall.Open("/dev/console", syscall.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			return
		}
		if con != fd {
			_ = syscall.Dup3(con, fd, 0)
			_ = syscall.Close(con)
		}
	}
}

// parseCmdline returns key=value words; bare words map to "" (e.g. "ro").
func parseCmdline(s string) map[string]string {
	out := map[string]string{}
	for _, w := range strings.Fields(s) {
		k, v := w, ""
		if i := strings.IndexByte(w, '='); i >= 0 {
			k, v = w[:i], w[i+1:]
		}
		out[k] = v
	}
	return out
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// mountAll mounts what is not mounted yet (after switch_root the moved mounts are there).
func mountAll(srv *server, specs []mountSpec) {
	mounted := mountPoints()
	for _, m := range specs {
		if mounted[m.target] {
			continue
		}
		_ = os.MkdirAll(m.target, 0o755)
		if err := syscall.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			srv.logf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
}

func mountPoints() map[string]bool {
	out := map[string]bool{}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 {
			out[fields[1]] = true
		}
	}
	return out
}

func linkDevFiles() {
	for name, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, name)
	}
}

// loadModules loads modules.list then banger.modules, in order, with finit_module.
func loadModules(srv *server, cmd map[string]string) {
	var names []string
	for _, line := range strings.Split(readFileString(modulesList), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	if v := cmd["banger.modules"]; v != "" {
		names = append(names, strings.Split(v, ",")...)
	}
	for _, n := range names {
		if err := loadModule(modulePath(n)); err != nil {
			srv.logf("module %s: %v", n, err)
		}
	}
}

func modulePath(name string) string {
	if !filepath.IsAbs(name) {
		name = filepath.Join(modulesDir, name)
	}
	if !strings.Contains(filepath.Base(name), ".ko") {
		name += ".ko"
	}
	return name
}

const moduleInitCompressedFile = 4

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(path, ext) {
			flags = moduleInitCompressedFile
		}
	}
	empty, _ := syscall.BytePtrFromString("")
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(empty)), uintptr(flags))
	if errno != 0 && errno != syscall.EEXIST {
		return errno
	}
	return nil
}

// switchRoot mounts the real root, moves the API filesystems into it, makes it "/" and
// execs the agent from there (like util-linux switch_root; the small initramfs stays in RAM).
func switchRoot(cmd map[string]string) error {
	dev := cmd["banger.root"]
	for i := 0; i < 100 && !exists(dev); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	fstype := cmd["banger.rootfstype"]
	if fstype == "" {
		fstype = "ext4"
	}
	var flags uintptr
	if _, ro := cmd["ro"]; ro {
		flags |= syscall.MS_RDONLY
	}
	const newRoot = "/newroot"
	_ = os.MkdirAll(newRoot, 0o755)
	if err := syscall.Mount(dev, newRoot, fstype, flags, cmd["banger.rootflags"]); err != nil {
		return fmt.Errorf("mount %s (%s): %w", dev, fstype, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		_ = os.MkdirAll(newRoot+m, 0o755)
		if err := syscall.Mount(m, newRoot+m, "", syscall.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := syscall.Mount(newRoot, "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	// This very binary goes on, not the image's copy: the daemon puts its own agent into every
	// boot's initramfs, so a guest always speaks the daemon's protocol, however old the image.
	// /proc/self/exe still reaches the initramfs file after the chroot.
	agent := cmd["banger.agent"]
	if agent == "" {
		agent = selfExe
	}
	return syscall.Exec(agent, []string{"banger-agent", "--init", "--switched"}, os.Environ())
}

// handOffToInit starts the agent as a detached child and execs the image's init as PID 1.
func handOffToInit(srv *server, initPath string, port uint32) {
	// selfExe, not os.Executable(): after switch_root this binary's path ("/init") is not in
	// the new root, but the kernel still resolves its /proc/self/exe.
	attr := &syscall.ProcAttr{Env: os.Environ(), Sys: &syscall.SysProcAttr{Setsid: true},
		Files: []uintptr{0, 1, 2}}
	_, err := syscall.ForkExec(selfExe, []string{"banger-agent", "serve", "--guest", "--vsock-port", strconv.Itoa(int(port))}, attr)
	if err != nil {
		srv.logf("starting the agent beside %s: %v", initPath, err)
	}
	err = syscall.Exec(initPath, []string{initPath}, []string{"PATH=" + defaultPath, "TERM=linux"})
	srv.logf("exec %s: %v; the agent stays init", initPath, err)
}

func startSSHD(srv *server) {
	_ = os.MkdirAll("/run/sshd", 0o755)
	env := []string{"PATH=" + defaultPath}
	if keygen, err := lookPath("ssh-keygen", defaultPath, "/"); err == nil {
		if _, st, err := srv.reaper.start(keygen, []string{"ssh-keygen", "-A"}, &os.ProcAttr{Env: env, Files: []*os.File{nil, os.Stderr, os.Stderr}}); err == nil {
			<-st
		}
	}
	sshd, err := lookPath("sshd", defaultPath, "/")
	if err != nil {
		srv.logf("banger.sshd=1 but no sshd in the image")
		return
	}
	if _, _, err := srv.reaper.start(sshd, []string{sshd, "-D", "-e"}, &os.ProcAttr{Env: env, Files: []*os.File{nil, os.Stderr, os.Stderr}}); err != nil {
		srv.logf("sshd: %v", err)
	}
}

// watchPowerSignals: Ctrl-Alt-Del (Firecracker's SendCtrlAltDel) arrives as SIGINT once
// the kernel is told not to reboot by itself; SIGTERM and SIGPWR also power off.
func watchPowerSignals(srv *server, cmd map[string]string) {
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_CAD_OFF)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPWR)
	go func() {
		<-sig
		powerOff(srv, cmd)
	}()
}

// powerOff: stop processes, sync, unmount, then POWER_OFF (or RESTART when asked).
func powerOff(srv *server, cmd map[string]string) {
	srv.logf("powering off")
	syscall.Sync()
	_ = syscall.Kill(-1, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	_ = syscall.Kill(-1, syscall.SIGKILL)
	syscall.Sync()
	unmountAll()
	syscall.Sync()
	how := syscall.LINUX_REBOOT_CMD_POWER_OFF
	if cmd["banger.poweroff"] == "reboot" {
		how = syscall.LINUX_REBOOT_CMD_RESTART
	}
	_ = syscall.Reboot(how)
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// unmountAll detaches everything but the API filesystems, deepest first, then makes / read-only.
func unmountAll() {
	var targets []string
	for t := range mountPoints() {
		switch t {
		case "/", "/proc", "/sys", "/dev":
			continue
		}
		targets = append(targets, t)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(targets)))
	for _, t := range targets {
		_ = syscall.Unmount(t, 0)
	}
	_ = syscall.Mount("", "/", "", syscall.MS_REMOUNT|syscall.MS_RDONLY, "")
}

// powerOffViaInit: when the image's init is PID 1, ask it to power off like an admin would.
func powerOffViaInit(srv *server) {
	syscall.Sync()
	if p, err := lookPath("poweroff", defaultPath, "/"); err == nil && srv.reaper != nil {
		if _, _, err := srv.reaper.start(p, []string{"poweroff"}, &os.ProcAttr{Env: []string{"PATH=" + defaultPath}}); err == nil {
			return
		}
	}
	_ = syscall.Kill(1, syscall.SIGTERM)
}
