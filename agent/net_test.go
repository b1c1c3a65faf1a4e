package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetworkSetupInNetns configures a dummy eth0 inside a throwaway network namespace
// (unshare -n) exactly as init mode does from the kernel command line.
func TestNetworkSetupInNetns(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for unshare -n")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	script := `ip link add eth0 type veth peer name eth1 && ip link set eth1 up && "$0" -test.run '^TestNetHelper$' && ip -4 addr show eth0 && ip -4 route`
	out, code := runViaReaper(t, []string{"unshare", "-n", "sh", "-c", script, os.Args[0]}, "BANGER_NET_HELPER="+resolv)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"inet 10.77.0.2/24", "default via 10.77.0.1 dev eth0", "UP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(resolv); string(b) != "nameserver 10.77.0.53\nnameserver 1.1.1.1\n" {
		t.Errorf("resolv.conf: %q", b)
	}
}

// runViaReaper runs a command through the agent's reaper: os/exec's Wait would race it.
func runViaReaper(t *testing.T, argv []string, extraEnv ...string) (string, int) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		t.Skip(err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_, status, err := testReaper.start(path, argv, &os.ProcAttr{Env: append(os.Environ(), extraEnv...), Files: []*os.File{nil, wr, wr}})
	wr.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rd)
	ws := <-status
	return string(out), ws.ExitStatus()
}

func TestNetHelper(t *testing.T) {
	path := os.Getenv("BANGER_NET_HELPER")
	if path == "" {
		t.Skip("run by TestNetworkSetupInNetns inside a namespace")
	}
	cmd := map[string]string{"banger.ip": "10.77.0.2/24", "banger.gw": "10.77.0.1", "banger.dns": "10.77.0.53,1.1.1.1"}
	if err := configureNetwork(cmd, path); err != nil {
		t.Fatal(err)
	}
}
