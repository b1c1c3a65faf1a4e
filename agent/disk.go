package main

// disk.mount: mounts a disk the host attached and filled (the workspace slot, an ext4 the
// host built with mkfs.ext4 -d) at a directory. The disk is found by its virtio-blk serial,
// not its name: virtio-mmio probe order is not the order the VMM lists the disks in.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

const blkflsbuf = 0x1261 // _IO(0x12, 97): drop the device's buffer cache

var diskSerial = regexp.MustCompile(`^[a-z0-9-]{1,20}$`)

func init() {
	handlers["disk.mount"] = handleDiskMount
	features = append(features, "disk.mount")
}

// handleDiskMount: `name` is the disk's serial, `path` the (absolute) mount point.
func handleDiskMount(c *channel, req *openReq) (interface{}, error) {
	if !diskSerial.MatchString(req.Name) {
		return nil, invalid("disk.mount: bad disk serial %q", req.Name)
	}
	if !filepath.IsAbs(req.Path) || filepath.Clean(req.Path) != req.Path || req.Path == "/" {
		return nil, invalid("disk.mount: path must be a clean absolute directory other than /, got %q", req.Path)
	}
	dev, err := findDiskBySerial("/sys/block", req.Name)
	if err != nil {
		return nil, err
	}
	// The kernel read the disk's first blocks when it probed it, before the host wrote the
	// filesystem: drop them so the mount reads what is there now.
	if err := flushBuffers(dev); err != nil {
		return nil, fmt.Errorf("disk.mount: %s: %v", dev, err)
	}
	if err := os.MkdirAll(req.Path, 0o755); err != nil {
		return nil, fmt.Errorf("disk.mount: %v", err)
	}
	// noinit_itable: the host left inode tables uninitialised (sparse); zeroing them in the
	// guest would cost it time and fill the host's sparse file for nothing.
	if err := syscall.Mount(dev, req.Path, "ext4", syscall.MS_NOSUID|syscall.MS_NODEV, "noinit_itable"); err != nil {
		return nil, fmt.Errorf("disk.mount: mount %s on %s: %v", dev, req.Path, err)
	}
	return map[string]string{"device": dev}, nil
}

// findDiskBySerial returns /dev/<name> of the block device whose serial is `serial`.
func findDiskBySerial(sysBlock, serial string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("disk.mount: %v", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", &opError{"not_found", fmt.Sprintf("no disk with serial %q", serial)}
}

func flushBuffers(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), blkflsbuf, 0); errno != 0 {
		return errno
	}
	return nil
}
