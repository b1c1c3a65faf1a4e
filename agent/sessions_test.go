package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRingKeepsTheLastBytesByOffset(t *testing.T) {
	r := ring{size: 8}
	buf := make([]byte, 16)
	r.write([]byte("abc"))
	if n, next := r.readAt(buf, 0); string(buf[:n]) != "abc" || next != 3 {
		t.Fatalf("got %q next %d", buf[:n], next)
	}
	r.write([]byte("defghij")) // 10 bytes written, 8 kept: "cdefghij"
	if n, next := r.readAt(buf, 0); string(buf[:n]) != "cdefghij" || next != 10 {
		t.Fatalf("an overwritten offset reads from the oldest kept: %q next %d", buf[:n], next)
	}
	if n, _ := r.readAt(buf, 7); string(buf[:n]) != "hij" {
		t.Fatalf("offset 7: %q", buf[:n])
	}
	if n, next := r.readAt(buf, 10); n != 0 || next != 10 {
		t.Fatalf("at the end: %d %d", n, next)
	}
	r.write([]byte("0123456789AB")) // larger than the ring: only its tail stays
	if n, _ := r.readAt(buf, 0); string(buf[:n]) != "456789AB" || r.total != 22 {
		t.Fatalf("big write: %q total %d", buf[:n], r.total)
	}
	small := make([]byte, 3)
	if n, next := r.readAt(small, 20); string(small[:n]) != "AB" || next != 22 {
		t.Fatalf("small read: %q next %d", small[:n], next)
	}
	if n, next := r.readAt(small, 15); string(small[:n]) != "567" || next != 18 {
		t.Fatalf("wrapped read: %q next %d", small[:n], next)
	}
}

func TestRingBoundedUnderManyWrites(t *testing.T) {
	r := ring{size: 1000}
	var all bytes.Buffer
	for i := 0; i < 5000; i++ {
		line := []byte(strings.Repeat(string(rune('a'+i%26)), i%37+1))
		r.write(line)
		all.Write(line)
	}
	if len(r.data) != 1000 || r.total != int64(all.Len()) {
		t.Fatalf("kept %d, total %d", len(r.data), r.total)
	}
	buf := make([]byte, 2000)
	n, _ := r.readAt(buf, 0)
	if !bytes.Equal(buf[:n], all.Bytes()[all.Len()-1000:]) {
		t.Fatal("the ring does not hold the last 1000 bytes")
	}
}

// request opens a one-shot channel and returns its RESULT (or fails on ERROR).
func (h *testHost) request(ch uint32, req openReq) []byte {
	h.sendJSON(ch, tOpen, req)
	for {
		f := h.nextOn(ch)
		switch f.typ {
		case tResult:
			if c := h.next(); c.typ != tClose {
				h.t.Fatalf("expected CLOSE after RESULT, got %d", c.typ)
			}
			return f.payload
		case tError:
			h.t.Fatalf("%s: %s", req.Kind, f.payload)
		}
	}
}

// stream reads a channel's output until its RESULT, or until `until` appears in it.
func (h *testHost) stream(ch uint32, until string) (string, []byte) {
	var out strings.Builder
	for {
		f := h.nextOn(ch)
		switch f.typ {
		case tData:
			out.Write(f.payload)
			if until != "" && strings.Contains(out.String(), until) {
				return out.String(), nil
			}
		case tResult:
			h.next() // its CLOSE
			return out.String(), f.payload
		case tError:
			h.t.Fatalf("error: %s", f.payload)
		}
	}
}

func listSessions(h *testHost, ch uint32) map[string]sessionInfo {
	var res struct{ Sessions []sessionInfo }
	_ = json.Unmarshal(h.request(ch, openReq{Kind: "session.list"}), &res)
	out := map[string]sessionInfo{}
	for _, s := range res.Sessions {
		out[s.Name] = s
	}
	return out
}

func TestSessionSurvivesItsConnectionAndReplaysScrollback(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	script := `echo started; while read line; do echo "got:$line"; done; echo bye; exit 3`
	h.request(1, openReq{Kind: "session.start", Name: "loop", Argv: []string{"sh", "-c", script}})
	h.conn.Close() // the host goes away: the session must not

	h2, _, _ := newTestSession(t, false)
	h2.handshake("")
	s, ok := listSessions(h2, 1)["loop"]
	if !ok || s.State != "running" || s.PID <= 0 || s.TTY {
		t.Fatalf("after reconnect: %+v", s)
	}
	h2.request(2, openReq{Kind: "session.send", Name: "loop", Data: []byte("one\n")})

	// attach replays what was printed before, then follows live output and takes input
	h2.sendJSON(3, tOpen, openReq{Kind: "session.attach", Name: "loop"})
	if out, _ := h2.stream(3, "got:one\n"); out != "started\ngot:one\n" {
		t.Fatalf("scrollback: %q", out)
	}
	h2.send(frame{channel: 3, typ: tData, payload: []byte("two\n")})
	if out, _ := h2.stream(3, "got:two\n"); out != "got:two\n" {
		t.Fatalf("live: %q", out)
	}
	h2.send(frame{channel: 3, typ: tClose}) // detach
	time.Sleep(50 * time.Millisecond)
	if listSessions(h2, 4)["loop"].State != "running" {
		t.Fatal("detaching ended the session")
	}

	// input EOF is not ours to send on attach; session.kill ends it
	h2.request(5, openReq{Kind: "session.kill", Name: "loop", Signal: 15})
	h2.sendJSON(6, tOpen, openReq{Kind: "session.logs", Name: "loop", Follow: true})
	out, result := h2.stream(6, "")
	var info sessionInfo
	_ = json.Unmarshal(result, &info)
	if out != "started\ngot:one\ngot:two\n" || info.State != "exited" || info.Signal == nil || *info.Signal != 15 {
		t.Fatalf("logs %q, result %s", out, result)
	}
	if s := listSessions(h2, 7)["loop"]; s.State != "exited" {
		t.Fatalf("an exited session stays listed: %+v", s)
	}
	h2.request(8, openReq{Kind: "session.kill", Name: "loop"}) // kill of an exited one removes it
	if _, ok := listSessions(h2, 9)["loop"]; ok {
		t.Fatal("session still listed after removal")
	}
}

func TestSessionPTYExitStatusAndNameRules(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	h.request(1, openReq{Kind: "session.start", Name: "tty", Argv: []string{"sh", "-c", "stty size; exit 4"}, Tty: &winsize{Rows: 30, Cols: 100}})
	h.sendJSON(2, tOpen, openReq{Kind: "session.logs", Name: "tty", Follow: true})
	out, result := h.stream(2, "")
	var info sessionInfo
	_ = json.Unmarshal(result, &info)
	if !strings.Contains(out, "30 100") || info.ExitCode == nil || *info.ExitCode != 4 || !info.TTY {
		t.Fatalf("out %q result %s", out, result)
	}
	for i, bad := range []openReq{
		{Kind: "session.start", Name: "tty", Argv: []string{"true"}},       // taken
		{Kind: "session.start", Name: "../x", Argv: []string{"true"}},      // bad name
		{Kind: "session.start", Name: "nope", Argv: []string{"no-such-x"}}, // missing program
		{Kind: "session.send", Name: "ghost", Data: []byte("x")},
		{Kind: "session.rm", Name: "ghost"},
	} {
		ch := uint32(10 + i)
		h.sendJSON(ch, tOpen, bad)
		if f := h.next(); f.typ != tError || f.channel != ch {
			t.Fatalf("%+v: got %d %s", bad, f.typ, f.payload)
		}
		h.next() // CLOSE
	}
	if _, ok := listSessions(h, 20)["nope"]; ok {
		t.Fatal("a session that failed to start is listed")
	}
	h.request(21, openReq{Kind: "session.rm", Name: "tty"})
}

func TestSessionRemoveRefusesRunningUnlessForced(t *testing.T) {
	h, _, _ := newTestSession(t, false)
	h.handshake("")
	var started struct{ PID int }
	_ = json.Unmarshal(h.request(1, openReq{Kind: "session.start", Name: "sleeper", Argv: []string{"sleep", "30"}}), &started)
	h.sendJSON(2, tOpen, openReq{Kind: "session.rm", Name: "sleeper"})
	if f := h.next(); f.typ != tError || !strings.Contains(string(f.payload), "still running") {
		t.Fatalf("got %d %s", f.typ, f.payload)
	}
	h.next()
	h.request(3, openReq{Kind: "session.rm", Name: "sleeper", Force: true})
	if _, ok := listSessions(h, 4)["sleeper"]; ok {
		t.Fatal("still listed")
	}
}
