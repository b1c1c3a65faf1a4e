package main

// Static IPv4 networking from the kernel command line, with ioctls on an AF_INET socket
// (no netlink library in the standard library; ioctls cover address, netmask, up, route).

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	siocADDRT      = 0x890B
	siocGIFFLAGS   = 0x8913
	siocSIFFLAGS   = 0x8914
	siocSIFADDR    = 0x8916
	siocSIFNETMASK = 0x891C
	rtfUp          = 0x1
	rtfGateway     = 0x2
)

// ifreq is struct ifreq: a 16-byte name and a 24-byte union.
type ifreq struct {
	name [16]byte
	data [24]byte
}

// rtentry is struct rtentry on 64-bit Linux (amd64 and arm64 share the layout).
type rtentry struct {
	pad1    uint64
	dst     [16]byte
	gateway [16]byte
	genmask [16]byte
	flags   uint16
	pad2    int16
	pad3    uint64
	pad4    uintptr
	metric  int16
	dev     uintptr
	mtu     uint64
	window  uint64
	irtt    uint16
}

func sockaddrIn(ip net.IP) [16]byte {
	var sa [16]byte
	*(*uint16)(unsafe.Pointer(&sa[0])) = syscall.AF_INET
	copy(sa[4:8], ip.To4())
	return sa
}

// netConfig is one static IPv4 setup of the guest's NIC: from the kernel command line at
// boot (configureNetwork), or from the host when a restored guest takes a new identity
// (identity.go). Both apply it with applyNetwork.
type netConfig struct {
	iface string
	ip    net.IP
	mask  net.IPMask
	gw    net.IP   // nil: no default route
	dns   []string // nil: resolv.conf left alone
}

func configureNetwork(cmd map[string]string, resolvConf string) error {
	fd, err := inetSocket()
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_ = setUp(fd, "lo")
	cfg, err := netConfigFromCmdline(cmd)
	if err != nil || cfg == nil {
		return err
	}
	if err := waitForIface(cfg.iface); err != nil {
		return err
	}
	return applyNetwork(fd, cfg, resolvConf)
}

func inetSocket() (int, error) {
	return syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
}

// bootIface is the NIC the kernel command line names (banger.iface), eth0 by default.
func bootIface(cmd map[string]string) (string, error) {
	iface := cmd["banger.iface"]
	if iface == "" {
		iface = "eth0"
	}
	if len(iface) > 15 {
		return "", fmt.Errorf("interface name %q too long", iface)
	}
	return iface, nil
}

// netConfigFromCmdline reads banger.ip/gw/dns/iface; nil when there is no banger.ip.
func netConfigFromCmdline(cmd map[string]string) (*netConfig, error) {
	cidr := cmd["banger.ip"]
	if cidr == "" {
		return nil, nil
	}
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("banger.ip=%q: want IPv4 ADDR/PREFIX", cidr)
	}
	iface, err := bootIface(cmd)
	if err != nil {
		return nil, err
	}
	cfg := &netConfig{iface: iface, ip: ip, mask: ipnet.Mask}
	if gw := cmd["banger.gw"]; gw != "" {
		if cfg.gw = net.ParseIP(gw).To4(); cfg.gw == nil {
			return nil, fmt.Errorf("banger.gw=%q: want an IPv4 address", gw)
		}
	}
	if dns := cmd["banger.dns"]; dns != "" {
		cfg.dns = strings.Split(dns, ",")
	}
	return cfg, nil
}

func waitForIface(iface string) error {
	var err error
	for i := 0; i < 50; i++ { // the NIC driver may still be probing
		if _, err = net.InterfaceByName(iface); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("interface %s: %w", iface, err)
}

// applyNetwork sets the address and netmask, brings the link up, adds the default route
// and writes resolv.conf, as cfg says.
func applyNetwork(fd int, cfg *netConfig, resolvConf string) error {
	if err := ifreqAddr(fd, siocSIFADDR, cfg.iface, cfg.ip); err != nil {
		return fmt.Errorf("set address: %w", err)
	}
	if err := ifreqAddr(fd, siocSIFNETMASK, cfg.iface, net.IP(cfg.mask)); err != nil {
		return fmt.Errorf("set netmask: %w", err)
	}
	if err := setUp(fd, cfg.iface); err != nil {
		return fmt.Errorf("bring up %s: %w", cfg.iface, err)
	}
	if cfg.gw != nil {
		if err := addDefaultRoute(fd, cfg.gw); err != nil {
			return fmt.Errorf("default route via %s: %w", cfg.gw, err)
		}
	}
	if cfg.dns != nil {
		return writeResolvConf(resolvConf, cfg.dns)
	}
	return nil
}

func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(p)); errno != 0 {
		return errno
	}
	return nil
}

func ifreqAddr(fd int, req uintptr, iface string, ip net.IP) error {
	var r ifreq
	copy(r.name[:], iface)
	sa := sockaddrIn(ip)
	copy(r.data[:], sa[:])
	return ioctlPtr(fd, req, unsafe.Pointer(&r))
}

func setUp(fd int, iface string) error { return setLink(fd, iface, true) }

// setLink brings the link up (with IFF_RUNNING, as boot always did) or down.
func setLink(fd int, iface string, up bool) error {
	var r ifreq
	copy(r.name[:], iface)
	if err := ioctlPtr(fd, siocGIFFLAGS, unsafe.Pointer(&r)); err != nil {
		return err
	}
	flags := (*uint16)(unsafe.Pointer(&r.data[0]))
	if up {
		*flags |= syscall.IFF_UP | syscall.IFF_RUNNING
	} else {
		*flags &^= syscall.IFF_UP
	}
	return ioctlPtr(fd, siocSIFFLAGS, unsafe.Pointer(&r))
}

func addDefaultRoute(fd int, gw net.IP) error {
	rt := rtentry{flags: rtfUp | rtfGateway}
	rt.dst = sockaddrIn(net.IPv4zero)
	rt.genmask = sockaddrIn(net.IPv4zero)
	rt.gateway = sockaddrIn(gw)
	err := ioctlPtr(fd, siocADDRT, unsafe.Pointer(&rt))
	if errors.Is(err, syscall.EEXIST) {
		return nil
	}
	return err
}

// writeResolvConf replaces the file (a symlink into systemd-resolved's /run would dangle).
func writeResolvConf(path string, servers []string) error {
	var b strings.Builder
	for _, s := range servers {
		if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
			fmt.Fprintf(&b, "nameserver %s\n", ip)
		}
	}
	if b.Len() == 0 {
		return fmt.Errorf("banger.dns: no valid addresses")
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSymlink != 0 {
		_ = os.Remove(path)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
