package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testFsCtx(t *testing.T) (*fsCtx, string) {
	home := t.TempDir()
	return &fsCtx{acct: &account{name: "u", uid: 1000, gid: 1000, home: home}, asRoot: os.Geteuid() == 0}, home
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return errorCode(err)
}

func TestFsResolveIsRelativeToHome(t *testing.T) {
	fc, home := testFsCtx(t)
	for in, want := range map[string]string{
		"~":             home,
		"~/a/b":         filepath.Join(home, "a/b"),
		"rel/x":         filepath.Join(home, "rel/x"),
		"/etc/../tmp/":  "/tmp",
		"~other":        filepath.Join(home, "~other"), // only the user's own ~ expands
		"a/../../../..": "/",
	} {
		if got, err := fc.resolve(in); err != nil || got != want {
			t.Errorf("%q → %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a\x00b", "/" + strings.Repeat("a", maxPathLen)} {
		if _, err := fc.resolve(bad); codeOf(err) != "invalid" {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestFsStatDescribesFilesDirsAndSymlinks(t *testing.T) {
	fc, home := testFsCtx(t)
	f := filepath.Join(home, "f.txt")
	os.WriteFile(f, []byte("hello"), 0o640)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	os.Chtimes(f, mtime, mtime)
	os.Symlink("f.txt", filepath.Join(home, "link"))
	e, err := fc.lstat(f)
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "f.txt" || e.Type != "file" || e.Path != f || e.Size != 5 || e.Mode != 0o640 || e.Permissions != "-rw-r-----" {
		t.Fatalf("%+v", e)
	}
	if e.MtimeSec != mtime.Unix() || e.MtimeNsec != 123456789 || e.Owner == "" || e.Group == "" {
		t.Fatalf("%+v", e)
	}
	l, _ := fc.lstat(filepath.Join(home, "link"))
	if l.Type != "symlink" || l.SymlinkTarget == nil || *l.SymlinkTarget != "f.txt" {
		t.Fatalf("%+v", l)
	}
	d, _ := fc.lstat(home)
	if d.Type != "dir" || !strings.HasPrefix(d.Permissions, "d") {
		t.Fatalf("%+v", d)
	}
	if _, err := fc.lstat(filepath.Join(home, "missing")); codeOf(err) != "not_found" {
		t.Fatalf("missing: %v", err)
	}
	if _, err := fc.lstat(filepath.Join(f, "under-a-file")); codeOf(err) != "not_found" {
		t.Fatalf("under a file: %v", err)
	}
}

func listed(t *testing.T, fc *fsCtx, p string, depth, limit int) ([]fsEntry, error) {
	dir, err := fc.listRoot(p)
	if err != nil {
		return nil, err
	}
	var out []fsEntry
	_, err = fc.list(p, dir, depth, limit, func(e fsEntry) error { out = append(out, e); return nil })
	return out, err
}

func paths(es []fsEntry) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Path+":"+e.Type)
	}
	return strings.Join(s, " ")
}

func TestFsListHonoursDepthAndNeverFollowsSymlinks(t *testing.T) {
	fc, home := testFsCtx(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), nil, 0o600)
	os.MkdirAll(filepath.Join(home, "d/e/f"), 0o755)
	os.WriteFile(filepath.Join(home, "d/e/g"), nil, 0o644)
	os.WriteFile(filepath.Join(home, "a"), nil, 0o644)
	os.Symlink(outside, filepath.Join(home, "d/out"))
	one, err := listed(t, fc, home, 1, 100)
	if err != nil || paths(one) != home+"/a:file "+home+"/d:dir" {
		t.Fatalf("depth 1: %s %v", paths(one), err)
	}
	three, _ := listed(t, fc, home, 3, 100)
	want := []string{"/a:file", "/d:dir", "/d/e:dir", "/d/e/f:dir", "/d/e/g:file", "/d/out:symlink"}
	for i := range want {
		want[i] = home + want[i]
	}
	if paths(three) != strings.Join(want, " ") {
		t.Fatalf("depth 3: %s", paths(three))
	}
	// A symlink to a directory is listed through when it is the path asked for, with paths under it.
	viaLink, err := listed(t, fc, filepath.Join(home, "d/out"), 1, 100)
	if err != nil || paths(viaLink) != home+"/d/out/secret:file" {
		t.Fatalf("via link: %s %v", paths(viaLink), err)
	}
	if _, err := listed(t, fc, home, 3, 4); codeOf(err) != "invalid" {
		t.Fatalf("limit: %v", err)
	}
	if _, err := listed(t, fc, filepath.Join(home, "a"), 1, 100); codeOf(err) != "invalid" {
		t.Fatalf("file: %v", err)
	}
	if _, err := listed(t, fc, filepath.Join(home, "nope"), 1, 100); codeOf(err) != "not_found" {
		t.Fatalf("missing: %v", err)
	}
}

func TestFsMkdirMoveRemove(t *testing.T) {
	fc, home := testFsCtx(t)
	e, err := fc.mkdir(filepath.Join(home, "x/y/z"))
	if err != nil || e.Type != "dir" || e.Path != home+"/x/y/z" {
		t.Fatalf("%+v %v", e, err)
	}
	if os.Geteuid() == 0 {
		st, _ := os.Stat(filepath.Join(home, "x/y"))
		if st.Sys().(*syscall.Stat_t).Uid != 1000 {
			t.Fatal("created parents not owned by the user")
		}
	}
	if _, err := fc.mkdir(filepath.Join(home, "x/y")); codeOf(err) != "exists" {
		t.Fatalf("again: %v", err)
	}
	os.WriteFile(filepath.Join(home, "file"), []byte("1"), 0o644)
	if _, err := fc.mkdir(filepath.Join(home, "file")); codeOf(err) != "invalid" {
		t.Fatalf("over a file: %v", err)
	}
	m, err := fc.move(filepath.Join(home, "file"), filepath.Join(home, "new/parent/moved"))
	if err != nil || m.Name != "moved" || m.Size != 1 {
		t.Fatalf("move: %+v %v", m, err)
	}
	if _, err := fc.move(filepath.Join(home, "file"), filepath.Join(home, "again")); codeOf(err) != "not_found" {
		t.Fatalf("move missing: %v", err)
	}
	// Removing a symlink removes the link, never what it points at.
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "keep"), nil, 0o644)
	os.Symlink(target, filepath.Join(home, "x/link"))
	if err := fc.remove(filepath.Join(home, "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Fatal("removed through a symlink")
	}
	if _, err := os.Lstat(filepath.Join(home, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("not removed")
	}
	if err := fc.remove(filepath.Join(home, "x")); codeOf(err) != "not_found" {
		t.Fatalf("remove missing: %v", err)
	}
	if err := fc.remove("/"); codeOf(err) != "invalid" {
		t.Fatalf("remove /: %v", err)
	}
}

func TestFsWriteThenReadOverTheProtocol(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dir := t.TempDir()
	p := filepath.Join(dir, "sub/dir/file.bin")
	h.sendJSON(1, tOpen, openReq{Kind: "fs.write", Path: p})
	if f := h.nextOn(1); f.typ != tWindow { // the bulk window comes first
		t.Fatalf("expected WINDOW, got %d %s", f.typ, f.payload)
	}
	if f := h.nextOn(1); f.typ != tOpened {
		t.Fatalf("expected OPENED, got %d %s", f.typ, f.payload)
	}
	body := []byte(strings.Repeat("0123456789", 50000))
	var frames []frame
	for off := 0; off < len(body); off += 100000 {
		frames = append(frames, frame{channel: 1, typ: tData, stream: streamIn, payload: body[off : off+100000]})
	}
	sent := h.sendAsync(append(frames, frame{channel: 1, typ: tEOF, stream: streamIn})...)
	var res []byte
	for res == nil {
		f := h.nextOn(1)
		if f.typ == tError {
			t.Fatalf("write: %s", f.payload)
		}
		if f.typ == tResult {
			res = f.payload
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending the file: %v", err)
	}
	var e fsEntry
	json.Unmarshal(res, &e)
	if e.Path != p || e.Size != int64(len(body)) || e.Type != "file" {
		t.Fatalf("%s", res)
	}
	h.sendJSON(3, tOpen, openReq{Kind: "fs.read", Path: p})
	if f := h.nextOn(3); f.typ != tOpened || string(f.payload) != `{"size":500000}` {
		t.Fatalf("opened: %d %s", f.typ, f.payload)
	}
	credit := make([]byte, 4)
	binary.BigEndian.PutUint32(credit, 1<<20) // more than the initial window: the whole file
	h.send(frame{channel: 3, typ: tWindow, stream: streamOut, payload: credit})
	got, _ := h.stream(3, "")
	if got != string(body) {
		t.Fatalf("read back %d bytes", len(got))
	}
	h.sendJSON(5, tOpen, openReq{Kind: "fs.read", Path: dir})
	if f := h.nextOn(5); f.typ != tError || !strings.Contains(string(f.payload), "is a directory") {
		t.Fatalf("read a dir: %d %s", f.typ, f.payload)
	}
	h.sendJSON(7, tOpen, openReq{Kind: "fs.write", Path: dir})
	if f := h.nextOn(7); f.typ != tError || !strings.Contains(string(f.payload), `"invalid"`) {
		t.Fatalf("write a dir: %d %s", f.typ, f.payload)
	}
}

func TestFsListStreamsEntriesAsLines(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dir := t.TempDir()
	for _, n := range []string{"b", "a", "c"} {
		os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644)
	}
	h.sendJSON(1, tOpen, openReq{Kind: "fs.list", Path: dir})
	out, res := h.stream(1, "")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || string(res) != `{"entries":3}` || !strings.Contains(lines[0], `"name":"a"`) {
		t.Fatalf("%q %s", out, res)
	}
}

// watchEvents reads a watch channel's lines until it has want events.
func watchEvents(t *testing.T, h *testHost, ch uint32, want int) []fsEvent {
	var got []fsEvent
	var buf string
	for len(got) < want {
		f := h.nextOn(ch)
		if f.typ != tData {
			t.Fatalf("watch: frame %d %s after %v", f.typ, f.payload, got)
		}
		buf += string(f.payload)
		for {
			i := strings.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			var ev fsEvent
			json.Unmarshal([]byte(buf[:i]), &ev)
			buf = buf[i+1:]
			got = append(got, ev)
		}
	}
	return got
}

func TestFsWatchReportsCreateWriteRemoveRecursively(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "old"), 0o755)
	h.sendJSON(1, tOpen, openReq{Kind: "fs.watch", Path: dir, Recursive: true})
	if f := h.nextOn(1); f.typ != tOpened {
		t.Fatalf("expected OPENED, got %d %s", f.typ, f.payload)
	}
	os.WriteFile(filepath.Join(dir, "old/f"), []byte("x"), 0o644)
	evs := watchEvents(t, h, 1, 2)
	if evs[0] != (fsEvent{"old/f", "create"}) || evs[1] != (fsEvent{"old/f", "write"}) {
		t.Fatalf("%v", evs)
	}
	os.Mkdir(filepath.Join(dir, "new"), 0o755)
	if ev := watchEvents(t, h, 1, 1)[0]; ev != (fsEvent{"new", "create"}) {
		t.Fatalf("%v", ev)
	}
	os.WriteFile(filepath.Join(dir, "new/g"), nil, 0o644) // a directory made after the start is watched too
	if ev := watchEvents(t, h, 1, 1)[0]; ev != (fsEvent{"new/g", "create"}) {
		t.Fatalf("%v", ev)
	}
	os.Chmod(filepath.Join(dir, "new/g"), 0o600)
	os.Rename(filepath.Join(dir, "new/g"), filepath.Join(dir, "new/h"))
	os.Remove(filepath.Join(dir, "new/h"))
	evs = watchEvents(t, h, 1, 4)
	if evs[0] != (fsEvent{"new/g", "chmod"}) || evs[1] != (fsEvent{"new/g", "rename"}) || evs[2] != (fsEvent{"new/h", "create"}) || evs[3] != (fsEvent{"new/h", "remove"}) {
		t.Fatalf("%v", evs)
	}
	// Closing the channel ends the watch; a new one on a missing path is not_found.
	h.send(frame{channel: 1, typ: tClose})
	h.sendJSON(3, tOpen, openReq{Kind: "fs.watch", Path: filepath.Join(dir, "missing")})
	if f := h.nextOn(3); f.typ != tError || !strings.Contains(string(f.payload), "not_found") {
		t.Fatalf("%d %s", f.typ, f.payload)
	}
}

func TestFsWatchEndsWhenTheDirectoryGoes(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dir := filepath.Join(t.TempDir(), "w")
	os.Mkdir(dir, 0o755)
	h.sendJSON(1, tOpen, openReq{Kind: "fs.watch", Path: dir})
	h.nextOn(1) // OPENED
	os.Remove(dir)
	out, res := h.stream(1, "")
	if !strings.Contains(out, `"type":"remove"`) || string(res) != "{}" {
		t.Fatalf("%q %s", out, res)
	}
}
