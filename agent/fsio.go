package main

// fs.read streams one regular file's bytes; fs.write replaces one file with the bytes the
// host streams, creating its parents. Raw bytes rather than files.get/put's tar: an upload
// of unknown length (an HTTP body) needs no size up front, and there is no archive to parse.

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

func init() {
	handlers["fs.read"] = handleFsRead
	handlers["fs.write"] = handleFsWrite
}

func writeJSONLine(w *bufio.Writer, v interface{}) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// openRegular opens p for reading (following symlinks), refusing anything but a regular file.
func openRegular(p string) (*os.File, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, pathError(p, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, pathError(p, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, invalid("path '%s' is a directory", p)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, invalid("path '%s' is not a regular file", p)
	}
	return f, st.Size(), nil
}

// handleFsRead: OPENED {"size"} (the length the host will get), then exactly that many bytes.
func handleFsRead(c *channel, req *openReq) (interface{}, error) {
	_, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	f, size, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_ = c.opened(map[string]int64{"size": size})
	n, err := copyExactly(c.writer(streamOut), f, size)
	if err != nil {
		return nil, pathError(p, err)
	}
	c.eof(streamOut)
	return map[string]int64{"bytes": n}, nil
}

// copyExactly copies size bytes of r, padding with zeros if it shrank meanwhile (the host
// was promised that length).
func copyExactly(w io.Writer, r io.Reader, size int64) (int64, error) {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return n, err
	}
	if n < size {
		pad, err := io.CopyN(w, zeroReader{}, size-n)
		return n + pad, err
	}
	return n, nil
}

// handleFsWrite: the in stream's bytes become the file at path (truncated first), owned by
// the request's user; RESULT is the file's entry.
func handleFsWrite(c *channel, req *openReq) (interface{}, error) {
	fc, p, err := fsTarget(req)
	if err != nil {
		return nil, err
	}
	f, err := fc.createFile(p)
	if err != nil {
		return nil, err
	}
	c.in.grow(bulkWindow)
	_ = c.opened(struct{}{})
	buf := make([]byte, copyBuffer)
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, bufio.NewReaderSize(&c.in, copyBuffer), buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.in.stop()
		if errors.Is(err, errChannelClosed) {
			return nil, err
		}
		return nil, pathError(p, err)
	}
	return fc.lstat(p)
}

// createFile opens p for writing, truncated, creating its parents; p may not be a directory.
func (fc *fsCtx) createFile(p string) (*os.File, error) {
	if p == "/" {
		return nil, invalid("path '/' is a directory")
	}
	if _, err := fc.ensureDirs(filepath.Dir(p)); err != nil {
		return nil, pathError(filepath.Dir(p), err)
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil, invalid("path '%s' is a directory", p)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, pathError(p, err)
	}
	if fc.asRoot && (fc.acct.uid != 0 || fc.acct.gid != 0) {
		if err := f.Chown(int(fc.acct.uid), int(fc.acct.gid)); err != nil {
			f.Close()
			return nil, pathError(p, err)
		}
	}
	return f, nil
}
