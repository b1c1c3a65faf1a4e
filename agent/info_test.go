package main

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

func TestParseHexAddr(t *testing.T) {
	cases := map[string]struct {
		ip   string
		port int
	}{
		"0100007F:1F90":                         {"127.0.0.1", 8080},
		"00000000:0016":                         {"0.0.0.0", 22},
		"00000000000000000000000001000000:0035": {"::1", 53},
	}
	for in, want := range cases {
		ip, port, err := parseHexAddr(in)
		if err != nil || ip != want.ip || port != want.port {
			t.Errorf("%s → %s:%d %v", in, ip, port, err)
		}
	}
}

func TestListeningPortsFromFakeProc(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "net"), 0o755)
	os.WriteFile(filepath.Join(proc, "net", "tcp"), []byte(
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+
			"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"+
			"   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n"), 0o644)
	os.MkdirAll(filepath.Join(proc, "77", "fd"), 0o755)
	os.Symlink("socket:[4242]", filepath.Join(proc, "77", "fd", "3"))
	os.WriteFile(filepath.Join(proc, "77", "cmdline"), []byte("python3\x00-m\x00http.server\x00"), 0o644)
	ports, err := listeningPorts(proc)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 1 || ports[0].Port != 8080 || ports[0].PID != 77 || ports[0].Command != "python3 -m http.server" {
		t.Fatalf("%+v", ports)
	}
}

func TestStatsFromFakeProc(t *testing.T) {
	proc := t.TempDir()
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal:       2048 kB\nMemFree:        1024 kB\nMemAvailable:   1536 kB\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "stat"), []byte("cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 5 0 2 50 0 0 0 0 0 0\ncpu1 5 0 3 50 1 0 0 0 0 0\nintr 1\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.10 0.20 0.30 1/100 42\n"), 0o644)
	st, err := readStats(proc, "/")
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory["total"] != 2048*1024 || st.CPU.Count != 2 || st.CPU.Idle != 100 || st.Load[2] != 0.30 || st.Disk.Total == 0 {
		t.Fatalf("%+v", st)
	}
}

func TestCmdlineAndModulePaths(t *testing.T) {
	cmd := parseCmdline("console=ttyS0 ro banger.ip=10.0.0.2/24 banger.modules=virtio_blk,/x/y.ko.xz\n")
	if cmd["banger.ip"] != "10.0.0.2/24" || cmd["console"] != "ttyS0" {
		t.Fatalf("%v", cmd)
	}
	if _, ok := cmd["ro"]; !ok {
		t.Fatal("bare word lost")
	}
	if modulePath("virtio_blk") != "/lib/banger/modules/virtio_blk.ko" || modulePath("/x/y.ko.xz") != "/x/y.ko.xz" {
		t.Fatal(modulePath("virtio_blk"))
	}
}

func TestKernelStructSizes(t *testing.T) {
	if unsafe.Sizeof(ifreq{}) != 40 || unsafe.Sizeof(rtentry{}) != 120 || unsafe.Sizeof(sockaddrVM{}) != 16 {
		t.Fatalf("ifreq=%d rtentry=%d sockaddr_vm=%d", unsafe.Sizeof(ifreq{}), unsafe.Sizeof(rtentry{}), unsafe.Sizeof(sockaddrVM{}))
	}
}

func TestFindSerialPortViaSysfs(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class", "virtio-ports", "vport0p1"), 0o755)
	os.MkdirAll(filepath.Join(sys, "class", "virtio-ports", "vport0p2"), 0o755)
	os.WriteFile(filepath.Join(sys, "class", "virtio-ports", "vport0p1", "name"), []byte("org.qemu.guest_agent.0\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "class", "virtio-ports", "vport0p2", "name"), []byte("banger.agent\n"), 0o644)
	if got := findSerialPort(sys, dev); got != filepath.Join(dev, "vport0p2") {
		t.Fatalf("got %q", got)
	}
}
