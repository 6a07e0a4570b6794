package apply

import (
	"crypto/ed25519"
	"crypto/rand"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// newKey is a fresh authorized_keys line with comment.
func newKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

func TestSSHAuthorizedKeys(t *testing.T) {
	literal, cached, other := newKey(t, "alice@laptop"), newKey(t, "bob@github"), newKey(t, "carol")
	n := newNode(t, &nodeconfig.Config{SSHAuthorizedKeys: []string{
		literal,
		"ssh-rsa AAAAB3Nza truncated",
		"github:bob",
		"gitlab:nobody", // not fetched yet
		literal,         // twice
	}})
	writeTestFile(t, n.Root, keyCacheFile("github:bob"), "# https://github.com/bob.keys\n"+cached+"\nnot a key\n")
	writeTestFile(t, n.Root, keyCacheFile("github:carol"), other+"\n") // not in the config
	n.step(t, sshStep)

	want := header + literal + "\n" + cached + "\n"
	if got := n.read(t, "/home/rancher/.ssh/authorized_keys"); got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	if got, want := n.mode(t, "/home/rancher/.ssh/authorized_keys"), fs.FileMode(0o600); got != want {
		t.Errorf("authorized_keys mode = %v, want %v", got, want)
	}
	if got, want := n.mode(t, "/home/rancher/.ssh"), fs.ModeDir|0o700; got != want {
		t.Errorf(".ssh mode = %v, want %v", got, want)
	}
	wantChowns := []chownCall{{"/home/rancher/.ssh", 1000, 1000}, {"/home/rancher/.ssh/authorized_keys", 1000, 1000}}
	if diff := cmp.Diff(wantChowns, n.chowns); diff != "" {
		t.Errorf("chowns (-want +got):\n%s", diff)
	}
}

func TestSSHDropIn(t *testing.T) {
	tests := []struct {
		name, password string
		login          bool
		want           string
	}{
		{"no password", "", false, "PasswordAuthentication no\n"},
		// A console password does not open SSH: rancher has sudo.
		{"password", hash, false, "PasswordAuthentication no\n"},
		{"password login asked for", hash, true, "PasswordAuthentication yes\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Password: tt.password, SSHPasswordLogin: tt.login}})
			n.step(t, sshStep)
			got := n.read(t, sshdDropIn)
			for _, line := range []string{tt.want, "PermitRootLogin no\n", "KbdInteractiveAuthentication no\n", "AllowTcpForwarding no\n",
				"HostKey /var/lib/k3os/ssh/ssh_host_ed25519_key\n", "HostKey /var/lib/k3os/ssh/ssh_host_ecdsa_key\n"} {
				if !strings.Contains(got, line) {
					t.Errorf("%s = %q, want a line %q", sshdDropIn, got, line)
				}
			}
		})
	}
}

// Host keys are made once, whole; one that a power cut left empty is
// made again.
func TestSSHHostKeys(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{})
	writeTestFile(t, n.Root, hostKeyPath("ecdsa"), "existing")
	writeTestFile(t, n.Root, hostKeyPath("ecdsa")+".pub", "ecdsa-sha2-nistp256 AAAA")
	n.step(t, sshStep)
	n.step(t, sshStep)
	want := []string{
		`ssh-keygen -q -N "" -t ed25519 -f /var/lib/k3os/ssh/ssh_host_ed25519_key.new`,
	}
	if diff := cmp.Diff(want, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands of two runs (-want +got):\n%s", diff)
	}
	for _, f := range []string{hostKeyPath("ed25519"), hostKeyPath("ed25519") + ".pub"} {
		if !nonEmpty(filepath.Join(n.Root, f)) {
			t.Errorf("%s was not made", f)
		}
	}
	writeTestFile(t, n.Root, hostKeyPath("ecdsa"), "")
	n.step(t, sshStep)
	if got := n.run.lines(n.Root); len(got) != 2 || !strings.HasSuffix(got[1], "ssh_host_ecdsa_key.new") {
		t.Errorf("an empty key was not made again: %v", got)
	}
	if got, want := n.mode(t, hostKeyDir), fs.ModeDir|0o700; got != want {
		t.Errorf("%s mode = %v, want %v", hostKeyDir, got, want)
	}
	if got, want := n.mode(t, "/var/lib"), fs.ModeDir|0o755; got != want {
		t.Errorf("/var/lib mode = %v, want %v", got, want)
	}
}

func TestKeyCacheFile(t *testing.T) {
	tests := []struct{ ref, want string }{
		{"github:octocat", "/var/lib/k3os/keys/github-octocat.keys"},
		{"gitlab:some-one", "/var/lib/k3os/keys/gitlab-some-one.keys"},
	}
	for _, tt := range tests {
		if got := keyCacheFile(tt.ref); got != tt.want {
			t.Errorf("keyCacheFile(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
	a, b := keyCacheFile("https://example.com/a/b_c"), keyCacheFile("https://example.com/a/b/c")
	if a == b || !strings.HasPrefix(a, "/var/lib/k3os/keys/url-example.com-") {
		t.Errorf("keyCacheFile of two URLs = %q and %q, want distinct files named after example.com", a, b)
	}
}
