package main

// fs.*: single-path filesystem operations for the host's sandbox API (stat, list with a
// depth, mkdir with parents, move, remove; fs.read/fs.write in fsio.go, fs.watch in
// fswatch.go). Paths are resolved for a user as a login shell would: "~" and relative paths
// are under that user's home. The agent acts as root, as the sandbox's envd does; what it
// creates belongs to the request's user.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

func init() {
	handlers["fs.stat"] = handleFsStat
	handlers["fs.list"] = handleFsList
	handlers["fs.mkdir"] = handleFsMkdir
	handlers["fs.move"] = handleFsMove
	handlers["fs.remove"] = handleFsRemove
	features = append(features, "fs")
}

// maxPathLen is Linux's PATH_MAX: longer paths cannot name anything.
const maxPathLen = 4096

// maxListDepth and maxListEntries bound one fs.list (the host asks for less).
const (
	maxListDepth   = 64
	maxListEntries = 100000
)

// fsEntry is one file's facts, the shape of the E2B filesystem API's EntryInfo.
type fsEntry struct {
	Name          string  `json:"name"`
	Type          string  `json:"type"` // file, dir, symlink, other
	Path          string  `json:"path"`
	Size          int64   `json:"size"`
	Mode          uint32  `json:"mode"`        // permission bits
	Permissions   string  `json:"permissions"` // as ls shows them: -rw-r--r--
	Owner         string  `json:"owner"`
	Group         string  `json:"group"`
	MtimeSec      int64   `json:"mtime_sec"`
	MtimeNsec     int64   `json:"mtime_nsec"`
	SymlinkTarget *string `json:"symlink_target,omitempty"`
}

// fsCtx is one request's user (for "~", relative paths and ownership) and id→name caches.
type fsCtx struct {
	acct   *account
	asRoot bool
	users  map[uint32]string
	groups map[uint32]string
}

// fsTarget is an fs.* request's user context and its path resolved for that user.
func fsTarget(req *openReq) (*fsCtx, string, error) {
	fc, err := newFsCtx(req.User)
	if err != nil {
		return nil, "", err
	}
	p, err := fc.resolve(req.Path)
	if err != nil {
		return nil, "", err
	}
	return fc, p, nil
}

func newFsCtx(spec string) (*fsCtx, error) {
	a, err := lookupUser(spec, "/etc/passwd", "/etc/group")
	if err != nil {
		return nil, err
	}
	if a.home == "" {
		a.home = "/"
	}
	return &fsCtx{acct: a, asRoot: os.Geteuid() == 0}, nil
}

// resolve turns a requested path into a clean absolute one: "~" and "~/x" are under the
// user's home, a relative path too.
func (fc *fsCtx) resolve(p string) (string, error) {
	if p == "" {
		return "", invalid("no path given")
	}
	if len(p) > maxPathLen || strings.ContainsRune(p, 0) {
		return "", invalid("path is longer than %d bytes or contains NUL", maxPathLen)
	}
	switch {
	case p == "~":
		p = fc.acct.home
	case strings.HasPrefix(p, "~/"):
		p = filepath.Join(fc.acct.home, p[2:])
	case !filepath.IsAbs(p):
		p = filepath.Join(fc.acct.home, p)
	}
	return filepath.Clean(p), nil
}

// own gives what the agent created to the request's user (root-owned otherwise).
func (fc *fsCtx) own(p string) error {
	if !fc.asRoot || (fc.acct.uid == 0 && fc.acct.gid == 0) {
		return nil
	}
	return os.Lchown(p, int(fc.acct.uid), int(fc.acct.gid))
}

// ensureDirs creates dir and its missing parents, each owned by the user; it reports
// whether dir itself was created.
func (fc *fsCtx) ensureDirs(dir string) (bool, error) {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return false, invalid("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if _, err := fc.ensureDirs(parent); err != nil {
			return false, err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) { // made meanwhile
			return false, nil
		}
		return false, err
	}
	return true, fc.own(dir)
}

func (fc *fsCtx) userName(id uint32) string {
	return idName(&fc.users, "/etc/passwd", 7, id)
}

func (fc *fsCtx) groupName(id uint32) string {
	return idName(&fc.groups, "/etc/group", 4, id)
}

// idName is id's name in the passwd-style file (read once into *names), else the number.
func idName(names *map[uint32]string, file string, fields int, id uint32) string {
	if *names == nil {
		*names = idNames(file, fields)
	}
	if n, ok := (*names)[id]; ok {
		return n
	}
	return strconv.FormatUint(uint64(id), 10)
}

// idNames maps the ids of /etc/passwd or /etc/group to their names (the first name wins).
func idNames(path string, fields int) map[uint32]string {
	out := map[uint32]string{}
	_ = eachLine(path, fields, func(f []string) bool {
		if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			if _, seen := out[uint32(n)]; !seen && len(f[0]) <= 64 {
				out[uint32(n)] = f[0]
			}
		}
		return true
	})
	return out
}

// entry describes p (not following a symlink) under the name and path given.
func (fc *fsCtx) entry(p string, st os.FileInfo) fsEntry {
	e := fsEntry{
		Name:        filepath.Base(p),
		Path:        p,
		Size:        st.Size(),
		Mode:        uint32(st.Mode().Perm()),
		Permissions: st.Mode().String(),
		MtimeSec:    st.ModTime().Unix(),
		MtimeNsec:   int64(st.ModTime().Nanosecond()),
	}
	switch m := st.Mode(); {
	case m.IsRegular():
		e.Type = "file"
	case m.IsDir():
		e.Type = "dir"
	case m&os.ModeSymlink != 0:
		e.Type = "symlink"
		if t, err := os.Readlink(p); err == nil {
			e.SymlinkTarget = &t
		}
	default:
		e.Type = "other"
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		e.Owner, e.Group = fc.userName(sys.Uid), fc.groupName(sys.Gid)
	}
	return e
}

func (fc *fsCtx) lstat(p string) (fsEntry, error) {
	st, err := os.Lstat(p)
	if err != nil {
		return fsEntry{}, pathError(p, err)
	}
	return fc.entry(p, st), nil
}

// pathError names the path and carries the protocol code of err.
func pathError(p string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	code := errorCode(err)
	if errors.Is(err, syscall.ENOSPC) {
		code = "no_space"
	}
	if errors.Is(err, syscall.ENOTDIR) {
		code = "not_found" // a file where a directory was expected: nothing at that path
	}
	return &opError{code, fmt.Sprintf("%s: %v", p, err)}
}

func handleFsStat(c *channel, req *openReq) (interface{}, error) {
	fc, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	return fc.lstat(p)
}

func handleFsMkdir(c *channel, req *openReq) (interface{}, error) {
	fc, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	return fc.mkdir(p)
}

// mkdir creates p with its parents; an existing directory is the code "exists".
func (fc *fsCtx) mkdir(p string) (fsEntry, error) {
	if st, err := os.Stat(p); err == nil {
		if st.IsDir() {
			return fsEntry{}, &opError{"exists", fmt.Sprintf("directory already exists: %s", p)}
		}
		return fsEntry{}, invalid("path already exists but it is not a directory: %s", p)
	}
	created, err := fc.ensureDirs(p)
	if err != nil {
		return fsEntry{}, pathError(p, err)
	}
	if !created {
		return fsEntry{}, &opError{"exists", fmt.Sprintf("directory already exists: %s", p)}
	}
	return fc.lstat(p)
}

func handleFsMove(c *channel, req *openReq) (interface{}, error) {
	fc, src, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	dst, err := fc.resolve(req.Dest)
	if err != nil {
		return nil, err
	}
	return fc.move(src, dst)
}

// move renames src to dst, creating dst's parents.
func (fc *fsCtx) move(src, dst string) (fsEntry, error) {
	if _, err := os.Lstat(src); err != nil {
		return fsEntry{}, pathError(src, err)
	}
	if src == "/" || dst == "/" {
		return fsEntry{}, invalid("cannot move /")
	}
	if _, err := fc.ensureDirs(filepath.Dir(dst)); err != nil {
		return fsEntry{}, pathError(filepath.Dir(dst), err)
	}
	if err := os.Rename(src, dst); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return fsEntry{}, pathError(dst, err)
	}
	return fc.lstat(dst)
}

func handleFsRemove(c *channel, req *openReq) (interface{}, error) {
	fc, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	return struct{}{}, fc.remove(p)
}

// remove deletes p, a directory with everything in it; a symlink itself, never its target.
func (fc *fsCtx) remove(p string) error {
	if p == "/" {
		return invalid("refusing to remove /")
	}
	if _, err := os.Lstat(p); err != nil {
		return pathError(p, err)
	}
	if err := os.RemoveAll(p); err != nil {
		return pathError(p, err)
	}
	return nil
}

func handleFsList(c *channel, req *openReq) (interface{}, error) {
	fc, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	depth, limit := req.Depth, req.Limit
	if depth == 0 {
		depth = 1
	}
	if depth < 1 || depth > maxListDepth {
		return nil, invalid("depth must be 1 to %d", maxListDepth)
	}
	if limit <= 0 || limit > maxListEntries {
		limit = maxListEntries
	}
	dir, err := fc.listRoot(p)
	if err != nil {
		return nil, err
	}
	_ = c.opened(struct{}{})
	w := bufio.NewWriterSize(c.writer(streamOut), dataChunk)
	n, err := fc.list(p, dir, depth, limit, func(e fsEntry) error { return writeJSONLine(w, e) })
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return nil, err
	}
	c.eof(streamOut)
	return map[string]int{"entries": n}, nil
}

// listRoot is the directory to walk for p: p itself, or where a symlink p points.
func (fc *fsCtx) listRoot(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", pathError(p, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return "", pathError(p, err)
	}
	if !st.IsDir() {
		return "", invalid("path is not a directory: %s", p)
	}
	return dir, nil
}

// list walks dir (found at the requested path p) down to depth, never through symlinks,
// reporting entries under p, sorted by name within each directory; more than limit entries
// fail. A subdirectory that cannot be read is listed but not entered.
func (fc *fsCtx) list(p, dir string, depth, limit int, emit func(fsEntry) error) (int, error) {
	n := 0
	var walk func(shown, real string, level int) error
	walk = func(shown, real string, level int) error {
		ents, err := os.ReadDir(real)
		if err != nil {
			if level == 1 {
				return pathError(shown, err)
			}
			return nil
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, de := range ents {
			st, err := de.Info()
			if err != nil {
				continue // gone meanwhile
			}
			n++
			if n > limit {
				return invalid("more than %d entries under %s: list with a smaller depth", limit, p)
			}
			e := fc.entry(filepath.Join(real, de.Name()), st)
			e.Path = filepath.Join(shown, de.Name())
			if err := emit(e); err != nil {
				return err
			}
			if st.IsDir() && level < depth {
				if err := walk(e.Path, filepath.Join(real, de.Name()), level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return n, walk(p, dir, 1)
}
