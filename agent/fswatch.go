package main

// fs.watch: inotify on a directory (and, recursive, every directory under it, including
// ones created later), streamed to the host as JSON lines {"name","type"} until the host
// closes the channel or the directory goes away. Bounded: the kernel's event queue (it
// drops on overflow) and the channel's flow-control window, nothing in between; at most
// maxWatches directories per channel.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func init() {
	handlers["fs.watch"] = handleFsWatch
	features = append(features, "fs.watch")
}

const maxWatches = 8192

const watchMask = syscall.IN_CREATE | syscall.IN_MODIFY | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
	syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR

type fsEvent struct {
	Name string `json:"name"` // relative to the watched directory ("" is the directory itself)
	Type string `json:"type"` // create, write, remove, rename, chmod
}

type watcher struct {
	f         *os.File
	fd        int
	root      string
	recursive bool
	dirs      map[int32]string // watch descriptor → directory relative to root ("" for root)
	rootWd    int32
}

func handleFsWatch(c *channel, req *openReq) (interface{}, error) {
	_, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, pathError(p, err)
	}
	if !st.IsDir() {
		return nil, invalid("path is not a directory: %s", p)
	}
	w, err := newWatcher(p, req.Recursive)
	if err != nil {
		return nil, err
	}
	defer w.f.Close()
	c.setHooks(func() { w.f.Close() }, nil) // unblocks the read below
	_ = c.opened(struct{}{})
	out := bufio.NewWriterSize(c.writer(streamOut), dataChunk)
	err = w.run(func(ev fsEvent) error { return writeJSONLine(out, ev) }, out.Flush)
	if c.isAborted() {
		return nil, errChannelClosed
	}
	if err != nil {
		return nil, err
	}
	c.eof(streamOut)
	return struct{}{}, nil
}

func newWatcher(root string, recursive bool) (*watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, pathError(root, err)
	}
	// Non-blocking, so the runtime's poller reads it and Close wakes a pending Read.
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, root: root, recursive: recursive, dirs: map[int32]string{}}
	wd, err := w.add("")
	if err != nil {
		w.f.Close()
		return nil, err
	}
	w.rootWd = wd
	if recursive {
		if err := w.addTree(""); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *watcher) add(rel string) (int32, error) {
	if len(w.dirs) >= maxWatches {
		return 0, invalid("more than %d directories to watch under %s", maxWatches, w.root)
	}
	p := filepath.Join(w.root, rel)
	wd, err := syscall.InotifyAddWatch(w.fd, p, watchMask)
	if err != nil {
		return 0, pathError(p, err)
	}
	w.dirs[int32(wd)] = rel
	return int32(wd), nil
}

// addTree watches every directory under rel (not rel itself), never through symlinks.
// Directories that vanish or cannot be read meanwhile are skipped.
func (w *watcher) addTree(rel string) error {
	ents, err := os.ReadDir(filepath.Join(w.root, rel))
	if err != nil {
		return nil
	}
	for _, de := range ents {
		if !de.IsDir() {
			continue
		}
		sub := filepath.Join(rel, de.Name())
		if _, err := w.add(sub); err != nil {
			var oe *opError
			if errors.As(err, &oe) && oe.code == "invalid" {
				return err // too many
			}
			continue
		}
		if err := w.addTree(sub); err != nil {
			return err
		}
	}
	return nil
}

// run reads events until the root's watch is gone or the file is closed; flush runs after
// each batch the kernel hands over.
func (w *watcher) run(emit func(fsEvent) error, flush func() error) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		done, err := w.handle(buf[:n], emit)
		if err == nil {
			err = flush()
		}
		if err != nil || done {
			return err
		}
	}
}

// handle decodes one read's worth of inotify_event records; done once the root is unwatched.
func (w *watcher) handle(b []byte, emit func(fsEvent) error) (bool, error) {
	for len(b) >= syscall.SizeofInotifyEvent {
		wd := int32(binary.LittleEndian.Uint32(b[0:4]))
		mask := binary.LittleEndian.Uint32(b[4:8])
		nameLen := binary.LittleEndian.Uint32(b[12:16])
		end := syscall.SizeofInotifyEvent + int(nameLen)
		if end > len(b) {
			return false, nil
		}
		name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:end]), "\x00")
		b = b[end:]
		dir, known := w.dirs[wd]
		if mask&syscall.IN_IGNORED != 0 {
			delete(w.dirs, wd)
			if wd == w.rootWd {
				return true, nil
			}
			continue
		}
		if !known || mask&syscall.IN_Q_OVERFLOW != 0 {
			continue
		}
		self := mask&(syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0
		if self && wd != w.rootWd {
			continue // the parent's watch reports it, under its name
		}
		rel := dir
		if !self {
			rel = filepath.Join(dir, name)
		}
		if w.recursive && mask&syscall.IN_ISDIR != 0 && mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
			if _, err := w.add(rel); err == nil {
				_ = w.addTree(rel)
			}
		}
		if t := eventType(mask); t != "" {
			if err := emit(fsEvent{Name: rel, Type: t}); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

func eventType(mask uint32) string {
	switch {
	case mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0:
		return "create"
	case mask&syscall.IN_MODIFY != 0:
		return "write"
	case mask&(syscall.IN_DELETE|syscall.IN_DELETE_SELF) != 0:
		return "remove"
	case mask&(syscall.IN_MOVED_FROM|syscall.IN_MOVE_SELF) != 0:
		return "rename"
	case mask&syscall.IN_ATTRIB != 0:
		return "chmod"
	}
	return ""
}
