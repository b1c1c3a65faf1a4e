package main

// One-shot channels: health, ports, stats, shutdown; and tcp (a byte pipe to a guest port).

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func goarch() string { return runtime.GOARCH }

var startTime = time.Now()

func handleHealth(c *channel, _ *openReq) (interface{}, error) {
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return map[string]interface{}{
		"version": version, "arch": goarch(), "pid1": c.s.srv.pid1, "hostname": host,
		"kernel": strings.TrimSpace(string(kernel)), "agent_uptime_ms": time.Since(startTime).Milliseconds(),
	}, nil
}

func handleShutdown(c *channel, _ *openReq) (interface{}, error) {
	// Answer first; the server powers off (or exits in serve mode) once the reply is out.
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.s.srv.shutdown()
	}()
	return map[string]bool{"ok": true}, nil
}

// --- ports ---

type listenPort struct {
	Proto   string `json:"proto"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	PID     int    `json:"pid,omitempty"`
	Command string `json:"command,omitempty"`
}

func handlePorts(c *channel, _ *openReq) (interface{}, error) {
	ports, err := listeningPorts("/proc")
	if err != nil {
		return nil, err
	}
	return map[string]interface{}{"ports": ports}, nil
}

func listeningPorts(procRoot string) ([]listenPort, error) {
	var all []listenPort
	inodes := map[string][]int{}
	for _, proto := range []string{"tcp", "tcp6"} {
		found, err := parseProcNet(filepath.Join(procRoot, "net", proto), proto)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		for _, f := range found {
			inodes[f.inode] = append(inodes[f.inode], len(all))
			all = append(all, f.listenPort)
		}
	}
	owners := socketOwners(procRoot, inodes)
	for inode, idxs := range inodes {
		if pid, ok := owners[inode]; ok {
			for _, i := range idxs {
				all[i].PID = pid
				all[i].Command = processName(procRoot, pid)
			}
		}
	}
	return all, nil
}

type procNetEntry struct {
	listenPort
	inode string
}

// parseProcNet reads /proc/net/tcp{,6}: hex "ADDR:PORT", state 0A is LISTEN, field 9 the inode.
func parseProcNet(path, proto string) ([]procNetEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []procNetEntry
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		addr, port, err := parseHexAddr(fields[1])
		if err != nil {
			continue
		}
		out = append(out, procNetEntry{listenPort{Proto: proto, Address: addr, Port: port}, fields[9]})
	}
	return out, sc.Err()
}

// parseHexAddr decodes the kernel's hex address: 32-bit words in host (little-endian) order.
func parseHexAddr(s string) (string, int, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(s[:i])
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", 0, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return "", 0, err
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	return ip.String(), int(port), nil
}

// socketOwners maps socket inodes to the first pid holding them (scanning /proc/*/fd).
func socketOwners(procRoot string, want map[string][]int) map[string]int {
	owners := map[string]int{}
	if len(want) == 0 {
		return owners
	}
	dirs, _ := os.ReadDir(procRoot)
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(procRoot, d.Name(), "fd")
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
			if _, ok := want[inode]; ok {
				if _, seen := owners[inode]; !seen {
					owners[inode] = pid
				}
			}
		}
	}
	return owners
}

func processName(procRoot string, pid int) string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err == nil && len(b) > 0 {
		s := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if len(s) > 256 {
			s = s[:256]
		}
		return s
	}
	comm, _ := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(comm))
}

// --- stats ---

type stats struct {
	Memory map[string]uint64 `json:"memory"`
	CPU    cpuStats          `json:"cpu"`
	Disk   diskStats         `json:"disk"`
	Load   []float64         `json:"load"`
	Uptime float64           `json:"uptime_seconds"`
}

type cpuStats struct {
	Count int `json:"count"`
	// Cumulative jiffies (USER_HZ, 100/s) since boot; rates come from two samples.
	User    uint64 `json:"user"`
	Nice    uint64 `json:"nice"`
	System  uint64 `json:"system"`
	Idle    uint64 `json:"idle"`
	IOWait  uint64 `json:"iowait"`
	IRQ     uint64 `json:"irq"`
	SoftIRQ uint64 `json:"softirq"`
	Steal   uint64 `json:"steal"`
}

type diskStats struct {
	Path      string `json:"path"`
	Total     uint64 `json:"total"`
	Free      uint64 `json:"free"`
	Available uint64 `json:"available"`
}

func handleStats(c *channel, _ *openReq) (interface{}, error) { return readStats("/proc", "/") }

func readStats(procRoot, diskPath string) (*stats, error) {
	mem, err := readMeminfo(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return nil, err
	}
	cpu, err := readCPU(filepath.Join(procRoot, "stat"))
	if err != nil {
		return nil, err
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(diskPath, &fs); err != nil {
		return nil, err
	}
	bs := uint64(fs.Bsize)
	st := &stats{Memory: mem, CPU: cpu, Disk: diskStats{diskPath, fs.Blocks * bs, fs.Bfree * bs, fs.Bavail * bs}}
	if b, err := os.ReadFile(filepath.Join(procRoot, "loadavg")); err == nil {
		for _, f := range strings.Fields(string(b))[:3] {
			v, _ := strconv.ParseFloat(f, 64)
			st.Load = append(st.Load, v)
		}
	}
	if b, err := os.ReadFile(filepath.Join(procRoot, "uptime")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			st.Uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return st, nil
}

var meminfoKeys = map[string]string{
	"MemTotal": "total", "MemFree": "free", "MemAvailable": "available", "Buffers": "buffers",
	"Cached": "cached", "SwapTotal": "swap_total", "SwapFree": "swap_free",
}

func readMeminfo(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		key, ok := meminfoKeys[strings.TrimSuffix(fields[0], ":")]
		if !ok {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		out[key] = v * 1024 // kB → bytes
	}
	return out, sc.Err()
}

func readCPU(path string) (cpuStats, error) {
	var st cpuStats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			st.Count++
			continue
		}
		vals := make([]uint64, 8)
		for i := 0; i < 8 && i+1 < len(fields); i++ {
			vals[i], _ = strconv.ParseUint(fields[i+1], 10, 64)
		}
		st.User, st.Nice, st.System, st.Idle = vals[0], vals[1], vals[2], vals[3]
		st.IOWait, st.IRQ, st.SoftIRQ, st.Steal = vals[4], vals[5], vals[6], vals[7]
	}
	return st, sc.Err()
}

// --- tcp: the host's end of a port forward; the agent dials 127.0.0.1:PORT in the guest ---

func handleTCP(c *channel, req *openReq) (interface{}, error) {
	if req.Port <= 0 || req.Port > 65535 {
		return nil, invalid("tcp: bad port %d", req.Port)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(req.Port)), 5*time.Second)
	if err != nil {
		return nil, &opError{"connection_refused", fmt.Sprintf("tcp: %v", err)}
	}
	tc := conn.(*net.TCPConn)
	c.setHooks(func() { tc.Close() }, nil)
	_ = c.opened(struct{}{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c.writer(streamOut), tc)
		c.eof(streamOut)
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(tc, &c.in)
		_ = tc.CloseWrite()
	}()
	wg.Wait()
	tc.Close()
	return struct{}{}, nil
}
