package apply

import (
	"slices"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestHostname(t *testing.T) {
	tests := []struct {
		name, hostname, mac, want string
	}{
		{"from config", "k3s-1", "dc:a6:32:01:02:03", "k3s-1"},
		{"from MAC", "", "dc:a6:32:01:02:03", "k3os-010203"},
		{"MAC with dashes and capitals", "", "DC-A6-32-0A-0B-0C", "k3os-0a0b0c"},
		{"no MAC", "", "", "k3os"},
		{"not a MAC", "", "eth0-what", "k3os"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Hostname(&nodeconfig.Config{Hostname: tt.hostname}, tt.mac); got != tt.want {
				t.Errorf("Hostname(%q, %q) = %q, want %q", tt.hostname, tt.mac, got, tt.want)
			}
		})
	}
}

func TestHostnameStep(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{})
	writeTestFile(t, n.Root, "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 old-name\n10.0.0.5 nas\n")
	for range 2 {
		n.step(t, hostnameStep)
	}
	if got, want := n.read(t, "/etc/hostname"), "k3os-010203\n"; got != want {
		t.Errorf("/etc/hostname = %q, want %q", got, want)
	}
	want := "127.0.0.1 localhost\n127.0.1.1\tk3os-010203\n10.0.0.5 nas\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
	if got := n.read(t, "/etc/hosts"); got != want {
		t.Errorf("/etc/hosts = %q, want %q", got, want)
	}
	if got, want := n.run.lines(n.Root), []string{"hostname k3os-010203", "hostname k3os-010203"}; !slices.Equal(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

func TestEtcHosts(t *testing.T) {
	tests := []struct {
		name, old, host, want string
	}{
		{"no file", "", "k3s-1",
			"127.0.0.1\tlocalhost\n127.0.1.1\tk3s-1\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"},
		{"fqdn", "", "k3s-1.lab.example",
			"127.0.0.1\tlocalhost\n127.0.1.1\tk3s-1.lab.example k3s-1\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"},
		{"debian default", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n", "n",
			"127.0.0.1\tlocalhost\n127.0.1.1\tn\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(etcHosts([]byte(tt.old), tt.host)); got != tt.want {
				t.Errorf("etcHosts(%q, %q) = %q, want %q", tt.old, tt.host, got, tt.want)
			}
		})
	}
}
