package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWorkingDirNamesTheCause(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	root := &account{name: "root", uid: 0, home: dir}
	cases := []struct{ dir, code, msg string }{
		{filepath.Join(dir, "nonexist"), "bad_cwd", "no such directory: " + filepath.Join(dir, "nonexist")},
		{filepath.Join(file, "sub"), "bad_cwd", "no such directory: " + filepath.Join(file, "sub")},
		{file, "bad_cwd", "not a directory: " + file},
		{"relative/dir", "invalid", "the working directory must be an absolute path: relative/dir"},
	}
	for _, c := range cases {
		_, err := workingDir(c.dir, root)
		if errorCode(err) != c.code || err.Error() != c.msg {
			t.Errorf("%s: got %q (%s), want %q (%s)", c.dir, err, errorCode(err), c.msg, c.code)
		}
	}
	if got, err := workingDir(dir, root); err != nil || got != dir {
		t.Fatalf("an existing directory: %q %v", got, err)
	}
	if got, _ := workingDir("", &account{home: filepath.Join(dir, "gone")}); got != "/" {
		t.Fatalf("no directory asked and no home: %q, want /", got)
	}
	if got, _ := workingDir("", root); got != dir {
		t.Fatalf("no directory asked: the home %q, got %q", dir, got)
	}
}

func TestWorkingDirClosedToTheUser(t *testing.T) {
	dir := t.TempDir()
	closed := filepath.Join(dir, "closed", "inner")
	os.MkdirAll(closed, 0o755)
	os.Chmod(filepath.Join(dir, "closed"), 0o700)
	// Someone who neither owns it nor shares its group: the walk up finds the closed parent.
	other := &account{name: "other", uid: uint32(os.Getuid()) + 4242, gid: uint32(os.Getgid()) + 4242}
	if os.Getuid() != 0 {
		other = &account{name: "other", uid: 0xfffffff0, gid: 0xfffffff0}
	}
	_, err := workingDir(closed, other)
	if errorCode(err) != "bad_cwd" || !strings.HasPrefix(err.Error(), "permission denied: "+closed) {
		t.Fatalf("got %v (%s)", err, errorCode(err))
	}
	owner := &account{name: "me", uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	if _, err := workingDir(closed, owner); err != nil {
		t.Fatalf("its owner may enter: %v", err)
	}
}

func TestLookPathLikeAShell(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\necho tool\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("not a program\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	cases := []struct{ name, code, msg string }{
		{"nosuch-command-xyz", "command_not_found", "nosuch-command-xyz: command not found"},
		{"data.txt", "command_not_found", "data.txt: command not found"}, // in PATH but not executable: skipped
		{"./gone", "command_not_found", "./gone: no such file or directory"},
		{"./data.txt", "not_executable", "./data.txt: permission denied (not executable)"},
		{"./sub", "not_executable", "./sub: is a directory"},
	}
	for _, c := range cases {
		_, err := lookPath(c.name, dir, dir)
		if errorCode(err) != c.code || err.Error() != c.msg {
			t.Errorf("%s: got %q (%s), want %q (%s)", c.name, err, errorCode(err), c.msg, c.code)
		}
	}
	if p, err := lookPath("tool", "/nonexistent:"+dir, "/"); err != nil || p != filepath.Join(dir, "tool") {
		t.Fatalf("in PATH: %q %v", p, err)
	}
	if p, err := lookPath("./tool", "", dir); err != nil || p != filepath.Join(dir, "tool") {
		t.Fatalf("relative to the working directory: %q %v", p, err)
	}
}

// requestError opens a channel that must fail and returns the agent's ERROR code and message.
func (h *testHost) requestError(ch uint32, req openReq) (string, string) {
	h.sendJSON(ch, tOpen, req)
	for {
		f := h.nextOn(ch)
		switch f.typ {
		case tError:
			var e struct{ Code, Message string }
			json.Unmarshal(f.payload, &e)
			return e.Code, e.Message
		case tResult, tOpened:
			h.t.Fatalf("%s %v: expected an ERROR, got frame %d %s", req.Kind, req.Argv, f.typ, f.payload)
		}
	}
}

func TestExecAndSessionStartReportWhyNothingRan(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	dir := t.TempDir()
	script := filepath.Join(dir, "orphan.sh")
	os.WriteFile(script, []byte("#!/nonexistent/interpreter\n"), 0o755)
	cases := []struct {
		req       openReq
		code, msg string
	}{
		{openReq{Kind: "exec", Argv: []string{"nosuch-command-xyz"}}, "command_not_found", "nosuch-command-xyz: command not found"},
		{openReq{Kind: "exec", Argv: []string{"sh"}, Cwd: "/nonexist"}, "bad_cwd", "no such directory: /nonexist"},
		{openReq{Kind: "exec", Argv: []string{"/etc"}}, "not_executable", "/etc: is a directory"},
		{openReq{Kind: "exec", Argv: []string{script}}, "not_executable", script + ": bad interpreter or loader: no such file or directory"},
		{openReq{Kind: "session.start", Name: "nope", Argv: []string{"nosuch-command-xyz"}}, "command_not_found", "nosuch-command-xyz: command not found"},
		{openReq{Kind: "session.start", Name: "nope", Argv: []string{"sh"}, Cwd: "/nonexist"}, "bad_cwd", "no such directory: /nonexist"},
	}
	for i, c := range cases {
		code, msg := h.requestError(uint32(2*i+1), c.req)
		if code != c.code || msg != c.msg {
			t.Errorf("%s %v: got %s %q, want %s %q", c.req.Kind, c.req.Argv, code, msg, c.code, c.msg)
		}
	}
	if _, ok := listSessions(h, 99)["nope"]; ok {
		t.Fatal("a session that never started is not listed")
	}
}

func TestUserChannelAnswersAsExecWouldResolve(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	var u userInfo
	if err := json.Unmarshal(h.request(1, openReq{Kind: "user", User: "0"}), &u); err != nil || u.UID != 0 {
		t.Fatalf("uid 0: %+v %v", u, err)
	}
	if code, _ := h.requestError(3, openReq{Kind: "user", User: "nobody-here-xyz"}); code != "not_found" {
		t.Fatalf("an unknown name: %s", code)
	}
	if code, _ := h.requestError(5, openReq{Kind: "user"}); code != "invalid" {
		t.Fatalf("no user: %s", code)
	}
}
