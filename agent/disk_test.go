package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindDiskBySerial(t *testing.T) {
	dir := t.TempDir()
	for name, serial := range map[string]string{"vda": "", "vdb": "banger-ws\n", "vdc": "other"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if serial != "" {
			if err := os.WriteFile(filepath.Join(dir, name, "serial"), []byte(serial), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dev, err := findDiskBySerial(dir, "banger-ws"); err != nil || dev != "/dev/vdb" {
		t.Fatalf("got %q, %v", dev, err)
	}
	if _, err := findDiskBySerial(dir, "nope"); err == nil {
		t.Fatal("found a disk that is not there")
	}
}

func TestDiskMountRefusesBadParams(t *testing.T) {
	for _, req := range []openReq{{Name: "../x", Path: "/workspace"}, {Name: "banger-ws", Path: "rel"}, {Name: "banger-ws", Path: "/"}, {Name: "banger-ws", Path: "/a/../b"}} {
		r := req
		if _, err := handleDiskMount(nil, &r); err == nil {
			t.Fatalf("accepted %+v", req)
		} else if oe, ok := err.(*opError); !ok || oe.code != "invalid" {
			t.Fatalf("%+v: %v", req, err)
		}
	}
}
