package main

// User lookup from /etc/passwd and /etc/group (no cgo, no NSS: the guest image's files).

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

type account struct {
	name   string
	uid    uint32
	gid    uint32
	home   string
	shell  string
	groups []uint32
}

// lookupUser resolves "name", "uid" or either followed by ":gid". Empty means the agent's own user.
func lookupUser(spec string, passwd, group string) (*account, error) {
	if spec == "" {
		uid := os.Getuid()
		if a, err := findPasswd(passwd, func(f []string) bool { return f[2] == strconv.Itoa(uid) }); err == nil {
			return a, nil
		}
		return &account{name: "", uid: uint32(uid), gid: uint32(os.Getgid()), home: "/"}, nil
	}
	userPart, groupPart := spec, ""
	if i := strings.IndexByte(spec, ':'); i >= 0 {
		userPart, groupPart = spec[:i], spec[i+1:]
	}
	a, err := findPasswd(passwd, func(f []string) bool { return f[0] == userPart || f[2] == userPart })
	if err != nil {
		n, perr := strconv.ParseUint(userPart, 10, 32)
		if perr != nil {
			return nil, &opError{"not_found", fmt.Sprintf("user %q not found in %s", userPart, passwd)}
		}
		a = &account{uid: uint32(n), gid: uint32(n), home: "/"}
	}
	a.groups = supplementaryGroups(group, a.name)
	if groupPart != "" {
		g, err := lookupGroup(group, groupPart)
		if err != nil {
			return nil, err
		}
		a.gid = g
	}
	return a, nil
}

func findPasswd(path string, match func([]string) bool) (*account, error) {
	var found *account
	err := eachLine(path, 7, func(f []string) bool {
		if !match(f) {
			return true
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		found = &account{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5], shell: f[6]}
		return false
	})
	if err == nil && found == nil {
		err = os.ErrNotExist
	}
	return found, err
}

func lookupGroup(path, spec string) (uint32, error) {
	if n, err := strconv.ParseUint(spec, 10, 32); err == nil {
		return uint32(n), nil
	}
	var gid uint32
	ok := false
	_ = eachLine(path, 4, func(f []string) bool {
		if f[0] != spec {
			return true
		}
		if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			gid, ok = uint32(n), true
		}
		return false
	})
	if !ok {
		return 0, &opError{"not_found", fmt.Sprintf("group %q not found in %s", spec, path)}
	}
	return gid, nil
}

func supplementaryGroups(path, user string) []uint32 {
	var out []uint32
	if user == "" {
		return nil
	}
	_ = eachLine(path, 4, func(f []string) bool {
		for _, m := range strings.Split(f[3], ",") {
			if m == user {
				if n, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					out = append(out, uint32(n))
				}
			}
		}
		return true
	})
	return out
}

// eachLine calls fn with the colon-separated fields of each well-formed line until fn returns false.
func eachLine(path string, fields int, fn func([]string) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) < fields {
			continue
		}
		if !fn(parts) {
			break
		}
	}
	return sc.Err()
}

// credential is nil when no switch is needed (same uid as the agent).
func (a *account) credential() *syscall.Credential {
	if int(a.uid) == os.Getuid() && int(a.gid) == os.Getgid() && len(a.groups) == 0 {
		return nil
	}
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
}

func init() {
	handlers["user"] = handleUser
	features = append(features, "user")
}

// userInfo is the RESULT of a `user` channel: whom exec would run as for that spec.
type userInfo struct {
	Name string `json:"name"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Home string `json:"home"`
}

// handleUser looks a user up the way exec does, so the host can choose whom to land as
// (and own files for) without running anything in the guest.
func handleUser(c *channel, req *openReq) (interface{}, error) {
	if req.User == "" {
		return nil, invalid("user: no user given")
	}
	a, err := lookupUser(req.User, "/etc/passwd", "/etc/group")
	if err != nil {
		return nil, err
	}
	return userInfo{Name: a.name, UID: a.uid, GID: a.gid, Home: a.home}, nil
}
