package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func goodIdentityReq() *openReq {
	return &openReq{Kind: "reidentify", Hostname: "child-1", Seed: bytes.Repeat([]byte{7}, 64), TimeUnixMs: 1_800_000_000_000,
		Net: &reidentifyNet{MAC: "02:aa:bb:cc:dd:01", IP: "172.30.0.7", PrefixLength: 24, Gateway: "172.30.0.1", DNS: "172.30.0.1"}}
}

func TestParseIdentityAcceptsAWellFormedRequest(t *testing.T) {
	id, err := parseIdentity(goodIdentityReq(), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if id.hostname != "child-1" || id.now.UnixMilli() != 1_800_000_000_000 || id.mac.String() != "02:aa:bb:cc:dd:01" {
		t.Fatalf("parsed %+v", id)
	}
	if id.net.iface != "eth0" || !id.net.ip.Equal(net.IPv4(172, 30, 0, 7)) || !id.net.gw.Equal(net.IPv4(172, 30, 0, 1)) ||
		net.IP(id.net.mask).String() != "255.255.255.0" || strings.Join(id.net.dns, ",") != "172.30.0.1" {
		t.Fatalf("net %+v", id.net)
	}
	req := goodIdentityReq()
	req.Net = nil
	if id, err := parseIdentity(req, "eth0"); err != nil || id.net != nil {
		t.Fatalf("without net: %+v %v", id, err)
	}
}

func TestParseIdentityRefusesBadFields(t *testing.T) {
	cases := []struct {
		name string
		edit func(r *openReq)
		want string
	}{
		{"empty hostname", func(r *openReq) { r.Hostname = "" }, "hostname"},
		{"hostname with a space", func(r *openReq) { r.Hostname = "a b" }, "hostname"},
		{"hostname starting with a dash", func(r *openReq) { r.Hostname = "-x" }, "hostname"},
		{"hostname of 65 bytes", func(r *openReq) { r.Hostname = strings.Repeat("a", 65) }, "hostname"},
		{"hostname with a newline", func(r *openReq) { r.Hostname = "a\nb" }, "hostname"},
		{"no seed", func(r *openReq) { r.Seed = nil }, "seed is 0 bytes"},
		{"short seed", func(r *openReq) { r.Seed = make([]byte, 31) }, "seed is 31 bytes"},
		{"huge seed", func(r *openReq) { r.Seed = make([]byte, 513) }, "seed is 513 bytes"},
		{"no time", func(r *openReq) { r.TimeUnixMs = 0 }, "time_unix_ms"},
		{"time in seconds", func(r *openReq) { r.TimeUnixMs = 1_800_000_000 }, "time_unix_ms"},
		{"bad MAC", func(r *openReq) { r.Net.MAC = "02:aa:bb:cc:dd" }, "net.mac"},
		{"EUI-64 MAC", func(r *openReq) { r.Net.MAC = "02:aa:bb:cc:dd:ee:ff:00" }, "net.mac"},
		{"multicast MAC", func(r *openReq) { r.Net.MAC = "03:aa:bb:cc:dd:01" }, "unicast"},
		{"zero MAC", func(r *openReq) { r.Net.MAC = "00:00:00:00:00:00" }, "unicast"},
		{"IPv6 address", func(r *openReq) { r.Net.IP = "fd00::7" }, "net.ip"},
		{"IPv4-mapped address", func(r *openReq) { r.Net.IP = "::ffff:172.30.0.7" }, "net.ip"},
		{"address with a prefix", func(r *openReq) { r.Net.IP = "172.30.0.7/24" }, "net.ip"},
		{"prefix 0", func(r *openReq) { r.Net.PrefixLength = 0 }, "prefix_length"},
		{"prefix 31", func(r *openReq) { r.Net.PrefixLength = 31 }, "prefix_length"},
		{"network address", func(r *openReq) { r.Net.IP = "172.30.0.0" }, "network or broadcast"},
		{"broadcast address", func(r *openReq) { r.Net.IP = "172.30.0.255" }, "network or broadcast"},
		{"gateway outside the subnet", func(r *openReq) { r.Net.Gateway = "172.31.0.1" }, "net.gateway"},
		{"gateway is the address", func(r *openReq) { r.Net.Gateway = "172.30.0.7" }, "net.gateway"},
		{"no gateway", func(r *openReq) { r.Net.Gateway = "" }, "net.gateway"},
		{"bad DNS", func(r *openReq) { r.Net.DNS = "172.30.0.1,resolver" }, "net.dns"},
		{"four DNS servers", func(r *openReq) { r.Net.DNS = "1.1.1.1,1.0.0.1,8.8.8.8,9.9.9.9" }, "at most 3"},
	}
	for _, tc := range cases {
		req := goodIdentityReq()
		tc.edit(req)
		_, err := parseIdentity(req, "eth0")
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if errorCode(err) != "invalid" || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %s %q, want invalid mentioning %q on one line", tc.name, errorCode(err), err, tc.want)
		}
	}
}

// The protocol path: the kind is announced, a bad request is refused before anything
// changes, and an agent serving a test socket (not a VM) never renames or reseeds its host.
func TestReidentifyOverTheProtocol(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	bad := goodIdentityReq()
	bad.Hostname = "no spaces allowed"
	h.sendJSON(1, tOpen, bad)
	if f := h.nextOn(1); f.typ != tError || !strings.Contains(string(f.payload), `"invalid"`) {
		t.Fatalf("bad request: type %d %s", f.typ, f.payload)
	}
	h.sendJSON(3, tOpen, goodIdentityReq())
	f := h.nextOn(3)
	var e errorMsg
	if f.typ != tError || json.Unmarshal(f.payload, &e) != nil || e.Code != "unsupported" {
		t.Fatalf("not a VM: type %d %s", f.typ, f.payload)
	}
	found := false
	for _, k := range features {
		found = found || k == "reidentify"
	}
	if !found {
		t.Fatalf("features %v lack reidentify", features)
	}
}

// TestRenumberInNetns gives a veth "eth0" in a throwaway network namespace (unshare -n) an
// address as boot does, plus stray addresses, then renumbers it: new MAC, only the new
// address, the new default route and resolver.
func TestRenumberInNetns(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for unshare -n")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	script := `ip link add eth0 type veth peer name eth1 && ip link set eth1 up && ip link set eth0 address 02:00:00:00:00:99 &&
ip addr add 10.66.0.3/16 dev eth0 && ip addr add 10.66.0.4/16 dev eth0 &&
"$0" -test.run '^TestRenumberHelper$' && ip -4 addr show eth0 && ip link show eth0 && ip -4 route`
	out, code := runViaReaper(t, []string{"unshare", "-n", "sh", "-c", script, os.Args[0]}, "BANGER_RENUMBER_HELPER="+resolv)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"inet 10.88.0.5/24", "link/ether 02:12:34:56:78:9a", "default via 10.88.0.1 dev eth0", "state UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, gone := range []string{"10.66.", "10.77.", "02:00:00:00:00:99"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q still there:\n%s", gone, out)
		}
	}
	if b, _ := os.ReadFile(resolv); string(b) != "nameserver 10.88.0.53\n" {
		t.Errorf("resolv.conf: %q", b)
	}
}

func TestRenumberHelper(t *testing.T) {
	path := os.Getenv("BANGER_RENUMBER_HELPER")
	if path == "" {
		t.Skip("run by TestRenumberInNetns inside a namespace")
	}
	boot := map[string]string{"banger.ip": "10.77.0.2/24", "banger.gw": "10.77.0.1", "banger.dns": "10.77.0.53"}
	if err := configureNetwork(boot, path); err != nil {
		t.Fatal(err)
	}
	mac, cfg, err := parseReidentifyNet(&reidentifyNet{MAC: "02:12:34:56:78:9a", IP: "10.88.0.5", PrefixLength: 24, Gateway: "10.88.0.1", DNS: "10.88.0.53"}, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := renumber(mac, cfg, path); err != nil {
		t.Fatal(err)
	}
}
