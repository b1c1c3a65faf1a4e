package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func tarOf(t *testing.T, entries ...tar.Header) *bytes.Buffer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "data:" + h.Name
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return &buf
}

func TestSafeRel(t *testing.T) {
	for _, bad := range []string{"/etc/passwd", "../x", "a/../../x", "a/.."} {
		if _, err := safeRel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for in, want := range map[string]string{"a/b": "a/b", "./a//b/": "a/b", ".": ".", "a/./b": "a/b"} {
		if got, err := safeRel(in); err != nil || got != want {
			t.Errorf("%q → %q %v", in, got, err)
		}
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][]tar.Header{
		"symlink parent": {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "l/f", Typeflag: tar.TypeReg, Mode: 0o644}},
		"hardlink out":   {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
		"dotdot":         {{Name: "../f", Typeflag: tar.TypeReg, Mode: 0o644}},
		"device":         {{Name: "dev", Typeflag: tar.TypeChar, Mode: 0o644}},
	}
	for name, entries := range cases {
		root := t.TempDir()
		x := &extractor{root: root}
		if _, err := x.extract(tarOf(t, entries...)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Fatalf("wrote outside: %v", left)
	}
}

func TestExtractReplacesSymlinkInsteadOfWritingThroughIt(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	x := &extractor{root: root}
	_, err := x.extract(tarOf(t, tar.Header{Name: "f", Typeflag: tar.TypeSymlink, Linkname: victim}, tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o600}))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatal("wrote through the symlink")
	}
	if st, _ := os.Lstat(filepath.Join(root, "f")); !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestTarRoundTripKeepsModesAndLinks(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "p", "sub"), 0o750)
	os.WriteFile(filepath.Join(src, "p", "x.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("x.sh", filepath.Join(src, "p", "ln"))
	var buf bytes.Buffer
	if _, err := writeTar(&buf, filepath.Join(src, "p")); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	res, err := (&extractor{root: dst}).extract(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 4 {
		t.Fatalf("files=%d", res.Files)
	}
	if st, _ := os.Stat(filepath.Join(dst, "p", "x.sh")); st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}
	if st, _ := os.Stat(filepath.Join(dst, "p", "sub")); st.Mode().Perm() != 0o750 {
		t.Fatalf("dir mode %v", st.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(dst, "p", "ln")); l != "x.sh" {
		t.Fatalf("link %q", l)
	}
	if !strings.HasPrefix(filepath.Join(dst, "p"), dst) {
		t.Fatal("unexpected layout")
	}
}

// The extractor remembers directories it made; a later entry must still not be able to turn
// one into a symlink and write through it.
func TestExtractKnownDirectoryCannotBecomeASymlink(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	x := &extractor{root: root}
	_, err := x.extract(tarOf(t,
		tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "d", Typeflag: tar.TypeSymlink, Linkname: outside},
		tar.Header{Name: "d/b", Typeflag: tar.TypeReg, Mode: 0o644},
	))
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("replacing a directory with a symlink: %v", err)
	}
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Fatalf("wrote outside: %v", left)
	}
}

// Files keep their mode (setuid after chown), mtime and content, and replace what was there.
func TestExtractFileMetadataAndReplace(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("old"), 0o600)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	big := strings.Repeat("x", 3*copyBuffer+17)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name string
		mode int64
		body string
	}{{"f", 0o4755, "new"}, {"deep/er/big", 0o640, big}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: e.mode, Size: int64(len(e.body)), ModTime: mtime})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	res, err := (&extractor{root: root}).extract(&buf)
	if err != nil || res.Files != 2 || res.Bytes != int64(3+len(big)) {
		t.Fatalf("%+v %v", res, err)
	}
	st, _ := os.Stat(filepath.Join(root, "f"))
	if st.Mode().Perm() != 0o755 || st.Mode()&os.ModeSetuid == 0 || !st.ModTime().Equal(mtime) {
		t.Fatalf("f: mode %v mtime %v", st.Mode(), st.ModTime())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f")); string(b) != "new" {
		t.Fatalf("f: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "deep", "er", "big")); string(b) != big {
		t.Fatal("big file content differs")
	}
}
