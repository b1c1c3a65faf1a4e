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

func configureNetwork(cmd map[string]string, resolvConf string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	_ = setUp(fd, "lo")
	cidr := cmd["banger.ip"]
	if cidr == "" {
		return nil
	}
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("banger.ip=%q: want IPv4 ADDR/PREFIX", cidr)
	}
	iface := cmd["banger.iface"]
	if iface == "" {
		iface = "eth0"
	}
	if len(iface) > 15 {
		return fmt.Errorf("interface name %q too long", iface)
	}
	for i := 0; i < 50; i++ { // the NIC driver may still be probing
		if _, err = net.InterfaceByName(iface); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("interface %s: %w", iface, err)
	}
	if err := ifreqAddr(fd, siocSIFADDR, iface, ip); err != nil {
		return fmt.Errorf("set address: %w", err)
	}
	if err := ifreqAddr(fd, siocSIFNETMASK, iface, net.IP(ipnet.Mask)); err != nil {
		return fmt.Errorf("set netmask: %w", err)
	}
	if err := setUp(fd, iface); err != nil {
		return fmt.Errorf("bring up %s: %w", iface, err)
	}
	if gw := cmd["banger.gw"]; gw != "" {
		g := net.ParseIP(gw)
		if g == nil || g.To4() == nil {
			return fmt.Errorf("banger.gw=%q: want an IPv4 address", gw)
		}
		if err := addDefaultRoute(fd, g); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	if dns := cmd["banger.dns"]; dns != "" {
		return writeResolvConf(resolvConf, strings.Split(dns, ","))
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

func setUp(fd int, iface string) error {
	var r ifreq
	copy(r.name[:], iface)
	if err := ioctlPtr(fd, siocGIFFLAGS, unsafe.Pointer(&r)); err != nil {
		return err
	}
	flags := (*uint16)(unsafe.Pointer(&r.data[0]))
	*flags |= syscall.IFF_UP | syscall.IFF_RUNNING
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
