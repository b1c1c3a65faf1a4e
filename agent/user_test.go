package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\n# comment\ndev:x:1000:1000::/home/dev:/bin/bash\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nwheel:x:10:dev,other\ndev:x:1000:\n"), 0o644)
	a, err := lookupUser("dev", passwd, group)
	if err != nil || a.uid != 1000 || a.gid != 1000 || a.home != "/home/dev" || len(a.groups) != 1 || a.groups[0] != 10 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := lookupUser("1000:wheel", passwd, group); err != nil || a.uid != 1000 || a.gid != 10 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := lookupUser("4242", passwd, group); err != nil || a.uid != 4242 || a.home != "/" {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := lookupUser("nobody-here", passwd, group); errorCode(err) != "not_found" {
		t.Fatalf("%v", err)
	}
}
