package apply

import (
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestWriteFiles(t *testing.T) {
	files := []nodeconfig.File{
		{Path: "/etc/motd", Content: "hello\n"},
		{Path: "opt/bin/tool", Content: "IyEvYmluL3NoCg==", Encoding: "b64", Permissions: "0755", Owner: "rancher"},
		{Path: "/var/www/index.html", Content: "<p>", Owner: "www-data:adm", Permissions: "0640"},
		{Path: "/srv/by-number", Content: "x", Owner: "1234:27"},
		{Path: "/usr/local/bin/suid", Content: "x", Permissions: "4755"},
		{Path: "/../../escape", Content: "x"},
	}
	tests := []struct {
		path    string
		content string
		mode    fs.FileMode
	}{
		{"/etc/motd", "hello\n", 0o644},
		{"/opt/bin/tool", "#!/bin/sh\n", 0o755},
		{"/var/www/index.html", "<p>", 0o640},
		{"/srv/by-number", "x", 0o644},
		{"/usr/local/bin/suid", "x", os.ModeSetuid | 0o755},
		{"/escape", "x", 0o644},
	}
	n := newNode(t, &nodeconfig.Config{WriteFiles: files})
	n.step(t, writeFilesStep)
	for _, tt := range tests {
		if got := n.read(t, tt.path); got != tt.content {
			t.Errorf("%s = %q, want %q", tt.path, got, tt.content)
		}
		if got := n.mode(t, tt.path); got != tt.mode {
			t.Errorf("%s mode = %v, want %v", tt.path, got, tt.mode)
		}
	}
	if got, want := n.mode(t, "/opt/bin"), fs.ModeDir|0o755; got != want {
		t.Errorf("/opt/bin mode = %v, want %v", got, want)
	}
	wantChowns := []chownCall{
		{"/etc/motd", 0, 0},
		{"/opt/bin/tool", 1000, 1000},
		{"/var/www/index.html", 33, 4},
		{"/srv/by-number", 1234, 27},
		{"/usr/local/bin/suid", 0, 0},
		{"/escape", 0, 0},
	}
	if diff := cmp.Diff(wantChowns, n.chowns); diff != "" {
		t.Errorf("chowns (-want +got):\n%s", diff)
	}

	before := n.snapshot(t)
	n.step(t, writeFilesStep)
	if diff := cmp.Diff(before, n.snapshot(t)); diff != "" {
		t.Errorf("files after a second run (-first +second):\n%s", diff)
	}
}

func TestWriteFilesErrors(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{WriteFiles: []nodeconfig.File{
		{Path: "/etc/a", Owner: "nobody-here"},
		{Path: "/etc/b", Content: "not base64!", Encoding: "b64"},
		{Path: "/etc/c", Permissions: "rw"},
		{Path: "/etc/d", Content: "ok"},
	}})
	err := writeFilesStep(t.Context(), n.Context)
	if err == nil {
		t.Fatal("writeFilesStep = nil error, want errors for the bad entries")
	}
	for _, want := range []string{`write_files[0] /etc/a: no user "nobody-here"`, "write_files[1] /etc/b:", "write_files[2] /etc/c:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q, want it to mention %q", err, want)
		}
	}
	if got := n.read(t, "/etc/d"); got != "ok" {
		t.Errorf("/etc/d = %q, want %q: the good entry is written despite the bad ones", got, "ok")
	}
	for _, p := range []string{"/etc/a", "/etc/b", "/etc/c"} {
		if n.exists(p) {
			t.Errorf("%s was written, want nothing", p)
		}
	}
}
