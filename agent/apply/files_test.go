package apply

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// A user who owns a directory the agent writes into as root cannot point
// those writes elsewhere with a symlink; root's own symlinks still work.
func TestWritesFollowNoUserSymlink(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to give a directory to another user")
	}
	n := newNode(t, &nodeconfig.Config{
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGyF+f1rX0pTNg1f4rUeB0OeiJ8qzC1Y1hA9xFTSwXxR me"},
		WriteFiles:        []nodeconfig.File{{Path: "/home/rancher/notes/todo", Content: "x"}},
	})
	root := n.Root
	home := filepath.Join(root, "home", "rancher")
	os.MkdirAll(home, 0o755)
	os.Chown(home, 1000, 1000)
	// rancher's ~/.ssh and ~/notes point at root's /etc.
	os.MkdirAll(filepath.Join(root, "etc", "ssh"), 0o755)
	os.Symlink("../../etc/ssh", filepath.Join(home, ".ssh"))
	os.Symlink("/etc", filepath.Join(home, "notes"))
	err := n.writeFile("/home/rancher/.ssh/authorized_keys", []byte("key\n"), 0o600, nil)
	if !errors.Is(err, errSymlink) {
		t.Errorf("write through rancher's symlinked ~/.ssh: %v, want a refusal", err)
	}
	if err := writeFilesStep(t.Context(), n.Context); err == nil {
		t.Error("write_files through rancher's symlink passed")
	}
	for _, f := range []string{"etc/ssh/authorized_keys", "etc/todo"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("/%s was written through a user's symlink", f)
		}
	}
	// Root's own symlink in root's own directory (merged /usr) is followed.
	os.MkdirAll(filepath.Join(root, "usr", "lib"), 0o755)
	os.Symlink("usr/lib", filepath.Join(root, "lib"))
	if err := n.writeFile("/lib/systemd/system/x.service", []byte("[Unit]\n"), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/x.service")); err != nil || string(b) != "[Unit]\n" {
		t.Errorf("through /lib -> usr/lib: %q %v", b, err)
	}
	// A symlink at the file's own name is replaced, not written through.
	os.MkdirAll(filepath.Join(home, "real"), 0o755)
	os.Chown(filepath.Join(home, "real"), 1000, 1000)
	os.Symlink("/etc/passwd", filepath.Join(home, "real", "f"))
	if err := n.writeFile("/home/rancher/real/f", []byte("mine\n"), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(home, "real", "f")); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("the symlink is still there")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); string(b) != basePasswd {
		t.Error("/etc/passwd changed")
	}
}
