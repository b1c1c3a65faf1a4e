package main

// What exec and session.start share before a process starts: the account, a clean
// environment, the working directory and the program, each checked so a failure names
// its cause the way a shell would (exit 127 / 126 on the host):
//
//	command_not_found  nothing by that name in PATH, or no file at that path
//	not_executable     a directory, no execute permission, a bad interpreter or format
//	bad_cwd            the working directory is missing, not a directory, or closed to the user

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// prepareCommand resolves the account, environment, working directory and program path.
func prepareCommand(req *openReq) (path string, env []string, cwd string, acct *account, err error) {
	if acct, err = lookupUser(req.User, "/etc/passwd", "/etc/group"); err != nil {
		return
	}
	env = buildEnv(req.Env, acct, req.Tty != nil)
	if cwd, err = workingDir(req.Cwd, acct); err != nil {
		return
	}
	path, err = lookPath(req.Argv[0], envValue(env, "PATH"), cwd)
	return
}

// workingDir checks the requested directory, or picks the user's home (else /).
func workingDir(dir string, acct *account) (string, error) {
	if dir == "" {
		if st, err := os.Stat(acct.home); err == nil && st.IsDir() {
			return acct.home, nil
		}
		return "/", nil
	}
	if !filepath.IsAbs(dir) {
		return "", invalid("the working directory must be an absolute path: %s", dir)
	}
	st, err := os.Stat(dir)
	switch {
	case err != nil && (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
		return "", &opError{"bad_cwd", "no such directory: " + dir}
	case err != nil:
		return "", &opError{"bad_cwd", fmt.Sprintf("cannot use directory %s: %v", dir, unwrapErrno(err))}
	case !st.IsDir():
		return "", &opError{"bad_cwd", "not a directory: " + dir}
	}
	if !canEnter(dir, acct) {
		return "", &opError{"bad_cwd", fmt.Sprintf("permission denied: %s (for user %s)", dir, acct.label())}
	}
	return dir, nil
}

// canEnter: may acct search every directory on the way to dir? (The agent runs as root, so
// a stat alone would not see what the command's user meets at chdir.)
func canEnter(dir string, acct *account) bool {
	if acct.uid == 0 {
		return true
	}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return false
		}
		if !acct.may(st, 0o1) {
			return false
		}
		if p == "/" {
			return true
		}
	}
}

// may reports whether acct has the permission bit (1 execute/search, 2 write, 4 read) on st.
func (a *account) may(st os.FileInfo, bit os.FileMode) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := st.Mode().Perm()
	if sys.Uid == a.uid {
		return mode&(bit<<6) != 0
	}
	if sys.Gid == a.gid || a.inGroup(sys.Gid) {
		return mode&(bit<<3) != 0
	}
	return mode&bit != 0
}

func (a *account) inGroup(gid uint32) bool {
	for _, g := range a.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// label is the account as a message names it: its name, else its uid.
func (a *account) label() string {
	if a.name != "" {
		return a.name
	}
	return fmt.Sprint(a.uid)
}

// lookPath finds the program: a name with a slash is a path (relative to cwd), any other
// name is searched in the command's PATH (not the agent's own environment).
func lookPath(name, path, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		full := name
		if !filepath.IsAbs(name) {
			full = filepath.Join(cwd, name)
		}
		st, err := os.Stat(full)
		switch {
		case err != nil && (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
			return "", &opError{"command_not_found", name + ": no such file or directory"}
		case err != nil:
			return "", &opError{"not_executable", fmt.Sprintf("%s: %v", name, unwrapErrno(err))}
		case st.IsDir():
			return "", &opError{"not_executable", name + ": is a directory"}
		case st.Mode()&0o111 == 0:
			return "", &opError{"not_executable", name + ": permission denied (not executable)"}
		}
		return full, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		full := filepath.Join(dir, name)
		if !filepath.IsAbs(full) {
			full = filepath.Join(cwd, full)
		}
		if st, err := os.Stat(full); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return full, nil
		}
	}
	return "", &opError{"command_not_found", name + ": command not found"}
}

// startError names why a checked program still failed to start, as a shell would.
func startError(name string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return &opError{errorCode(err), fmt.Sprintf("%s: %v", name, err)}
	}
	switch errno {
	case syscall.ENOENT:
		// The file was there a moment ago: its #! interpreter or ELF loader is not.
		return &opError{"not_executable", name + ": bad interpreter or loader: no such file or directory"}
	case syscall.EACCES, syscall.EPERM, syscall.ENOEXEC, syscall.EISDIR, syscall.ETXTBSY, syscall.ELIBBAD:
		return &opError{"not_executable", fmt.Sprintf("%s: %v", name, errno)}
	}
	return &opError{errorCode(err), fmt.Sprintf("%s: %v", name, errno)}
}

func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
