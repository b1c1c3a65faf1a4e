package main

// reidentify (PROTOCOL.md, "Identity"): the host makes a restored or forked guest a new
// machine before anything else runs in it: a new hostname, the kernel RNG reseeded from the
// host's seed, the clock set from the host, and, with networking, a new MAC and address.
// Every field is validated before anything changes. It is also safe on a freshly booted
// guest (a pooled VM gets its name this way).

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// reidentifyNet is the `net` parameter: the NIC's new identity on the host's bridge.
type reidentifyNet struct {
	MAC          string `json:"mac"`
	IP           string `json:"ip"`
	PrefixLength int    `json:"prefix_length"`
	Gateway      string `json:"gateway"`
	DNS          string `json:"dns,omitempty"` // comma-separated, like banger.dns
}

// identity is a validated reidentify request.
type identity struct {
	hostname string
	seed     []byte
	now      time.Time
	mac      net.HardwareAddr // with net only
	net      *netConfig       // nil: networking untouched
}

// hostnameRule is banger's VM name rule: the daemon boots each VM with banger.hostname=<name>,
// so a new identity takes the same names. 64 bytes is the kernel's HOST_NAME_MAX.
var hostnameRule = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

const (
	minSeed = 32  // 256 bits: what the CRNG needs to be fully seeded
	maxSeed = 512 // the kernel's input pool takes no more at once anyway
	// A host clock outside these years is broken: refuse it rather than set it.
	minTimeMs = 946684800000  // 2000-01-01
	maxTimeMs = 4102444800000 // 2100-01-01
	maxDNS    = 3             // resolv.conf's MAXNS
)

func parseIdentity(req *openReq, iface string) (*identity, error) {
	if !hostnameRule.MatchString(req.Hostname) {
		return nil, invalid("hostname %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", limit64(req.Hostname))
	}
	if len(req.Seed) < minSeed || len(req.Seed) > maxSeed {
		return nil, invalid("seed is %d bytes: want %d to %d random bytes", len(req.Seed), minSeed, maxSeed)
	}
	if req.TimeUnixMs < minTimeMs || req.TimeUnixMs > maxTimeMs {
		return nil, invalid("time_unix_ms %d is not between the years 2000 and 2100", req.TimeUnixMs)
	}
	id := &identity{hostname: req.Hostname, seed: req.Seed, now: time.UnixMilli(req.TimeUnixMs)}
	if req.Net == nil {
		return id, nil
	}
	var err error
	if id.mac, id.net, err = parseReidentifyNet(req.Net, iface); err != nil {
		return nil, err
	}
	return id, nil
}

func parseReidentifyNet(n *reidentifyNet, iface string) (net.HardwareAddr, *netConfig, error) {
	mac, err := net.ParseMAC(n.MAC)
	if err != nil || len(mac) != 6 {
		return nil, nil, invalid("net.mac %q: want six hex bytes, aa:bb:cc:dd:ee:ff", limit64(n.MAC))
	}
	if mac[0]&1 != 0 || isZero(mac) {
		return nil, nil, invalid("net.mac %s: want a unicast address", mac)
	}
	ip := parseIPv4(n.IP)
	if ip == nil {
		return nil, nil, invalid("net.ip %q: want an IPv4 address", limit64(n.IP))
	}
	if n.PrefixLength < 1 || n.PrefixLength > 30 {
		return nil, nil, invalid("net.prefix_length %d: want 1 to 30", n.PrefixLength)
	}
	mask := net.CIDRMask(n.PrefixLength, 32)
	subnet := &net.IPNet{IP: ip.Mask(mask), Mask: mask}
	if ip.Equal(subnet.IP) || ip.Equal(broadcast(subnet)) {
		return nil, nil, invalid("net.ip %s is the network or broadcast address of %s", ip, subnet)
	}
	gw := parseIPv4(n.Gateway)
	if gw == nil || gw.Equal(ip) || !subnet.Contains(gw) {
		return nil, nil, invalid("net.gateway %q: want an IPv4 address in %s other than net.ip", limit64(n.Gateway), subnet)
	}
	cfg := &netConfig{iface: iface, ip: ip, mask: mask, gw: gw}
	if n.DNS != "" {
		cfg.dns = strings.Split(n.DNS, ",")
		if len(cfg.dns) > maxDNS {
			return nil, nil, invalid("net.dns: at most %d servers", maxDNS)
		}
		for _, s := range cfg.dns {
			if net.ParseIP(s) == nil {
				return nil, nil, invalid("net.dns %q: want IP addresses, comma-separated", limit64(n.DNS))
			}
		}
	}
	return mac, cfg, nil
}

// parseIPv4 accepts only dotted quads (net.ParseIP would also take IPv4-in-IPv6 forms).
func parseIPv4(s string) net.IP {
	if strings.Contains(s, ":") {
		return nil
	}
	return net.ParseIP(s).To4()
}

func broadcast(n *net.IPNet) net.IP {
	b := make(net.IP, 4)
	for i := range b {
		b[i] = n.IP[i] | ^n.Mask[i]
	}
	return b
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func handleReidentify(c *channel, req *openReq) (interface{}, error) {
	iface, err := bootIface(parseCmdline(readFileString("/proc/cmdline")))
	if err != nil {
		return nil, err
	}
	id, err := parseIdentity(req, iface)
	if err != nil {
		return nil, err
	}
	if !c.s.srv.guest {
		// serve --unix runs on the host for tests: this would rename and reseed the host.
		return nil, &opError{"unsupported", "reidentify changes the machine: only an agent serving a VM does it"}
	}
	// The RNG first: nothing the guest does from here on may draw from the snapshot's state.
	if err := reseedRNG(id.seed); err != nil {
		return nil, fmt.Errorf("reseed the kernel RNG: %w", err)
	}
	if err := setClock(id.now); err != nil {
		return nil, fmt.Errorf("set the clock: %w", err)
	}
	// As at boot (banger.hostname): the kernel's name only; the agent writes no /etc/hostname.
	if err := syscall.Sethostname([]byte(id.hostname)); err != nil {
		return nil, fmt.Errorf("set the hostname: %w", err)
	}
	if id.net != nil {
		if err := renumber(id.mac, id.net, "/etc/resolv.conf"); err != nil {
			return nil, err
		}
	}
	return struct{}{}, nil
}

const (
	rndAddEntropy = 0x40085203 // RNDADDENTROPY, _IOW('R', 0x03, int[2])
	rndReseedCRNG = 0x5207     // RNDRESEEDCRNG, _IO('R', 0x07)
)

// reseedRNG mixes the host's seed into the kernel's input pool, credited, then reseeds the
// CRNG from it at once. Writing to /dev/urandom alone is not enough: since Linux 5.18 such a
// write only mixes bytes into the input pool (uncredited); /dev/urandom and getrandom() go on
// reading the CRNG, whose key is in the snapshot's memory, identical in every child, until
// the next scheduled reseed (up to a minute later). RNDRESEEDCRNG rekeys it now and bumps its
// generation, so every CPU's CRNG (and, on 6.11+, vDSO getrandom state) rekeys on next use.
func reseedRNG(seed []byte) error {
	fd, err := syscall.Open("/dev/urandom", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]int32, 2+(len(seed)+3)/4)
	info[0] = int32(len(seed) * 8)
	info[1] = int32(len(seed))
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&info[2])), len(seed)), seed)
	if err := ioctlPtr(fd, rndAddEntropy, unsafe.Pointer(&info[0])); err != nil {
		return fmt.Errorf("RNDADDENTROPY: %w", err)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), rndReseedCRNG, 0); errno != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", errno)
	}
	return nil
}

func setClock(t time.Time) error {
	ts := syscall.NsecToTimespec(t.UnixNano())
	const clockRealtime = 0
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_SETTIME, clockRealtime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return errno
	}
	return nil
}

const (
	siocGIFADDR   = 0x8915
	siocSIFHWADDR = 0x8924
	arphrdEther   = 1
)

// renumber gives the NIC a new MAC and address. The link goes down first: the kernel then
// drops what the old identity left (the MAC's IPv6 link-local address, neighbours, routes
// through the NIC), and bringing it up again makes new ones. Then every IPv4 address is
// removed and cfg applied as at boot.
func renumber(mac net.HardwareAddr, cfg *netConfig, resolvConf string) error {
	if _, err := net.InterfaceByName(cfg.iface); err != nil {
		return &opError{"not_found", fmt.Sprintf("interface %s: %v", cfg.iface, err)}
	}
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := setLink(fd, cfg.iface, false); err != nil {
		return fmt.Errorf("bring down %s: %w", cfg.iface, err)
	}
	var r ifreq
	copy(r.name[:], cfg.iface)
	*(*uint16)(unsafe.Pointer(&r.data[0])) = arphrdEther // struct sockaddr: family, then the bytes
	copy(r.data[2:], mac)
	if err := ioctlPtr(fd, siocSIFHWADDR, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("set MAC %s on %s: %w", mac, cfg.iface, err)
	}
	if err := removeIPv4(fd, cfg.iface); err != nil {
		return fmt.Errorf("remove old addresses of %s: %w", cfg.iface, err)
	}
	return applyNetwork(fd, cfg, resolvConf)
}

// removeIPv4 deletes the NIC's IPv4 addresses: setting 0.0.0.0 deletes the first address
// labelled with the NIC's name (what boot and `ip addr add` make), so repeat until none is left.
func removeIPv4(fd int, iface string) error {
	for i := 0; i < 256; i++ {
		var r ifreq
		copy(r.name[:], iface)
		err := ioctlPtr(fd, siocGIFADDR, unsafe.Pointer(&r))
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ifreqAddr(fd, siocSIFADDR, iface, net.IPv4zero); err != nil {
			return err
		}
	}
	return errors.New("addresses keep coming back")
}

func init() {
	handlers["reidentify"] = handleReidentify
	features = append(features, "reidentify")
}
