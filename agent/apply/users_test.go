package apply

import (
	"io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

const hash = "$6$salt$hashhashhash"

func TestUsersPassword(t *testing.T) {
	tests := []struct {
		name     string
		password string
		shadow   string // rancher's current hash
		want     []Command
	}{
		{"hash", hash, "!", []Command{{Name: "chpasswd", Args: []string{"--encrypted"}, Stdin: "rancher:" + hash + "\n"}}},
		{"hash already set", hash, hash, nil},
		{"plain text", "hunter2 pw", hash, []Command{{Name: "chpasswd", Stdin: "rancher:hunter2 pw\n"}}},
		{"none, password set before", "", hash, []Command{{Name: "usermod", Args: []string{"--password", "!", "rancher"}}}},
		{"none, already locked", "", "!", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Password: tt.password}})
			writeTestFile(t, n.Root, "/etc/shadow", "root:*:1::::::\nrancher:"+tt.shadow+":1::::::\n")
			n.step(t, usersStep)
			if diff := cmp.Diff(tt.want, n.run.calls); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsersCreatesRancher(t *testing.T) {
	tests := []struct {
		name, group, useradd string
	}{
		{"new group", "root:x:0:\nsudo:x:27:\n",
			"useradd --create-home --uid 1000 --home-dir /home/rancher --shell /bin/bash --user-group --groups sudo rancher"},
		{"group exists, no sudo", "root:x:0:\nrancher:x:1000:\n",
			"useradd --create-home --uid 1000 --home-dir /home/rancher --shell /bin/bash --gid rancher rancher"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, &nodeconfig.Config{})
			writeTestFile(t, n.Root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
			writeTestFile(t, n.Root, "/etc/group", tt.group)
			writeTestFile(t, n.Root, "/etc/shadow", "root:$6$x$rootpw:1::::::\n")
			writeTestFile(t, n.Root, "/root/.ssh/authorized_keys", "ssh-ed25519 AAAA root@somewhere\n")
			n.step(t, usersStep)
			want := []string{tt.useradd, "usermod --password ! rancher", "usermod --password ! root"}
			if diff := cmp.Diff(want, n.run.lines(n.Root)); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
			if n.exists("/root/.ssh/authorized_keys") {
				t.Error("/root/.ssh/authorized_keys is still there")
			}
			if got, want := n.read(t, "/etc/sudoers.d/rancher"), "rancher ALL=(ALL) NOPASSWD: ALL\n"; got != want {
				t.Errorf("sudoers = %q, want %q", got, want)
			}
			if got, want := n.mode(t, "/etc/sudoers.d/rancher"), fs.FileMode(0o440); got != want {
				t.Errorf("sudoers mode = %v, want %v", got, want)
			}
		})
	}
}

func TestUsersFixesExistingRancher(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{})
	writeTestFile(t, n.Root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nrancher:x:1000:1000::/home/rancher:/bin/sh\n")
	writeTestFile(t, n.Root, "/etc/group", "sudo:x:27:\nrancher:x:1000:\n")
	n.step(t, usersStep)
	want := []string{
		"usermod --shell /bin/bash rancher",
		"usermod --append --groups sudo rancher",
	}
	if diff := cmp.Diff(want, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

func TestUsersUpToDate(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{})
	n.step(t, usersStep)
	if len(n.run.calls) != 0 {
		t.Errorf("commands = %q, want none", n.run.lines(n.Root))
	}
	// The account came with the image, the home did not.
	if got, want := n.mode(t, rancherHome), fs.ModeDir|0o700; got != want {
		t.Errorf("%s mode = %v, want %v", rancherHome, got, want)
	}
	if diff := cmp.Diff([]chownCall{{rancherHome, 1000, 1000}}, n.chowns); diff != "" {
		t.Errorf("chowns (-want +got):\n%s", diff)
	}
}
