package main

// files.put extracts a tar stream under a directory, refusing anything that would land
// outside it (absolute names, "..", writing through symlinks); files.get streams a path
// back as a tar archive rooted at its base name (like `tar -C dir base`).

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

type filesResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

func handlePut(c *channel, req *openReq) (interface{}, error) {
	if !filepath.IsAbs(req.Path) {
		return nil, invalid("files.put: destination %q must be an absolute path", req.Path)
	}
	c.in.grow(bulkWindow)
	_ = c.opened(struct{}{})
	x := &extractor{root: filepath.Clean(req.Path), uid: req.UID, gid: req.GID, asRoot: os.Geteuid() == 0}
	res, err := x.extract(bufio.NewReaderSize(&c.in, copyBuffer))
	if err != nil {
		c.in.stop()
	}
	return res, err
}

// bulkWindow is the credit files.put grants the host (PROTOCOL.md, "Flow control"): enough
// to keep a slow link busy while files are written, still a small bound on guest memory.
const bulkWindow = 4 << 20

// copyBuffer sizes the reads of the tar stream and the writes of file content: fewer,
// larger system calls (they are what costs most in an emulated guest).
const copyBuffer = 256 << 10

type extractor struct {
	root     string
	uid, gid *int
	asRoot   bool
	dirTimes []dirTime
	// dirs holds the directories under root (relative names) this extraction created or
	// checked to be real directories. Nothing in the archive can turn one into something
	// else (a file, link or symlink entry refuses to replace a directory), so their
	// children skip the checks.
	dirs map[string]bool
	buf  []byte
}

type dirTime struct {
	path  string
	mtime time.Time
}

func (x *extractor) extract(r io.Reader) (filesResult, error) {
	var res filesResult
	if err := os.MkdirAll(x.root, 0o755); err != nil {
		return res, err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, invalid("files.put: bad tar stream: %v", err)
		}
		n, err := x.entry(hdr, tr)
		if err != nil {
			return res, err
		}
		res.Files++
		res.Bytes += n
	}
	// Directory times last: creating their children changed them.
	for i := len(x.dirTimes) - 1; i >= 0; i-- {
		d := x.dirTimes[i]
		_ = os.Chtimes(d.path, d.mtime, d.mtime)
	}
	return res, nil
}

// safeRel cleans a tar name into a relative path that stays under the root.
func safeRel(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", invalid("tar entry name contains NUL")
	}
	if strings.HasPrefix(name, "/") {
		return "", invalid("tar entry %q is an absolute path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", invalid("tar entry %q escapes the destination", name)
		}
	}
	return path.Clean(name), nil
}

// parentInside creates the parent directories of rel under root, refusing to pass
// through a symlink (which could point anywhere) or a non-directory.
func (x *extractor) parentInside(rel string) error {
	parts := strings.Split(rel, "/")
	if x.dirs[path.Dir(rel)] {
		return nil
	}
	if x.dirs == nil {
		x.dirs = map[string]bool{}
	}
	dir := x.root
	for i, part := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, part)
		name := strings.Join(parts[:i+1], "/")
		if x.dirs[name] {
			continue
		}
		st, err := os.Lstat(dir)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			x.dirs[name] = true
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return invalid("tar entry %q would be written through the symlink %s", rel, dir)
		}
		if !st.IsDir() {
			return invalid("tar entry %q: %s is not a directory", rel, dir)
		}
		x.dirs[name] = true
	}
	return nil
}

// clearTarget removes whatever non-directory is at target so nothing is written through it.
func clearTarget(target string, keepDir bool) error {
	st, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		if keepDir {
			return nil
		}
		return invalid("%s is a directory", target)
	}
	return os.Remove(target)
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) (int64, error) {
	rel, err := safeRel(hdr.Name)
	if err != nil {
		return 0, err
	}
	target := x.root
	if rel != "." {
		if err := x.parentInside(rel); err != nil {
			return 0, err
		}
		target = filepath.Join(x.root, rel)
	}
	mode := os.FileMode(hdr.Mode).Perm() | modeBits(hdr.Mode)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return 0, x.makeDir(rel, target, hdr, mode)
	case tar.TypeReg, tar.TypeRegA:
		return x.writeFile(target, hdr, mode, r)
	case tar.TypeSymlink:
		if err := clearTarget(target, false); err != nil {
			return 0, err
		}
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return 0, err
		}
		return 0, x.own(target, hdr)
	case tar.TypeLink:
		src, err := x.linkSource(hdr.Linkname)
		if err != nil {
			return 0, err
		}
		if err := clearTarget(target, false); err != nil {
			return 0, err
		}
		return 0, os.Link(src, target)
	default:
		return 0, invalid("tar entry %q: unsupported type %q", hdr.Name, string(hdr.Typeflag))
	}
}

// makeDir creates a directory (or keeps one already there, replacing anything else); its
// mtime is set at the end of the extraction, after its children changed it.
func (x *extractor) makeDir(rel, target string, hdr *tar.Header, mode os.FileMode) error {
	if err := clearTarget(target, true); err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if rel != "." {
		if x.dirs == nil {
			x.dirs = map[string]bool{}
		}
		x.dirs[rel] = true // clearTarget left a directory there, or Mkdir made one
	}
	x.dirTimes = append(x.dirTimes, dirTime{target, hdr.ModTime})
	if err := x.own(target, hdr); err != nil {
		return err
	}
	// chmod after chown: chown clears setuid/setgid.
	return os.Chmod(target, mode)
}

// writeFile creates a regular file (replacing a non-directory already there, never
// following a symlink) and sets owner, mode and mtime through the open descriptor.
func (x *extractor) writeFile(target string, hdr *tar.Header, mode os.FileMode, r io.Reader) (int64, error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW
	f, err := os.OpenFile(target, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Something is there already (O_EXCL also refuses a symlink): replace it, like tar does.
		if err := clearTarget(target, false); err != nil {
			return 0, err
		}
		f, err = os.OpenFile(target, flags, 0o600)
	}
	if err != nil {
		return 0, err
	}
	if x.buf == nil {
		x.buf = make([]byte, copyBuffer)
	}
	// Hide the file's ReadFrom so CopyBuffer uses our large buffer (fewer writes).
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, r, x.buf)
	if err == nil {
		err = x.fown(f, hdr)
	}
	if err == nil {
		// chmod after chown: chown clears setuid/setgid.
		err = f.Chmod(mode)
	}
	if err == nil {
		_ = futimes(f, hdr.ModTime) // best effort, as tar does
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// futimes sets a file's access and modification times through its descriptor
// (utimensat with a NULL path; syscall.Futimes would need /proc).
func futimes(f *os.File, t time.Time) error {
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(t.UnixNano()), syscall.NsecToTimespec(t.UnixNano())}
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return &os.PathError{Op: "utimensat", Path: f.Name(), Err: errno}
	}
	return nil
}

// linkSource validates a hard link's target: inside the root, a regular file, no symlinks on the way.
func (x *extractor) linkSource(name string) (string, error) {
	rel, err := safeRel(name)
	if err != nil || rel == "." {
		return "", invalid("hard link target %q escapes the destination", name)
	}
	if err := x.parentInside(rel); err != nil {
		return "", err
	}
	src := filepath.Join(x.root, rel)
	st, err := os.Lstat(src)
	if err != nil {
		return "", fmt.Errorf("hard link target %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return "", invalid("hard link target %q is not a regular file", name)
	}
	return src, nil
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// own applies the requested owner, else the archive's owner when the agent is root.
func (x *extractor) own(target string, hdr *tar.Header) error {
	uid, gid := x.owner(hdr)
	if uid == -1 && gid == -1 {
		return nil
	}
	return os.Lchown(target, uid, gid)
}

// fown is own through an open file.
func (x *extractor) fown(f *os.File, hdr *tar.Header) error {
	uid, gid := x.owner(hdr)
	if uid == -1 && gid == -1 {
		return nil
	}
	return f.Chown(uid, gid)
}

// owner is the uid and gid to apply to an entry; -1 leaves that one alone.
func (x *extractor) owner(hdr *tar.Header) (int, int) {
	uid, gid := -1, -1
	if x.uid != nil {
		uid = *x.uid
	} else if x.asRoot {
		uid = hdr.Uid
	}
	if x.gid != nil {
		gid = *x.gid
	} else if x.asRoot {
		gid = hdr.Gid
	}
	return uid, gid
}

func handleGet(c *channel, req *openReq) (interface{}, error) {
	if !filepath.IsAbs(req.Path) {
		return nil, invalid("files.get: path %q must be absolute", req.Path)
	}
	root := filepath.Clean(req.Path)
	if _, err := os.Lstat(root); err != nil {
		return nil, &opError{errorCode(err), fmt.Sprintf("files.get: %v", err)}
	}
	_ = c.opened(struct{}{})
	res, err := writeTar(c.writer(streamOut), root)
	if err == nil {
		c.eof(streamOut)
	}
	return res, err
}

func writeTar(w io.Writer, root string) (filesResult, error) {
	var res filesResult
	base := filepath.Base(root)
	if root == "/" {
		base = "."
	}
	tw := tar.NewWriter(w)
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(filepath.Join(base, rel))
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil // sockets and the like: nothing to archive
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		res.Files++
		if !info.Mode().IsRegular() {
			return nil
		}
		n, err := copyFileInto(tw, p, info.Size())
		res.Bytes += n
		return err
	})
	if err != nil {
		return res, err
	}
	return res, tw.Close()
}

// copyFileInto copies exactly size bytes (the header is already written), padding a file that shrank.
func copyFileInto(w io.Writer, p string, size int64) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return copyExactly(w, f, size)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0
	}
	return len(p), nil
}
