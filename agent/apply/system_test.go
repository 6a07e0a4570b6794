package apply

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestModules(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Modules: []string{"br_netfilter", "nf_conntrack  hashsize=65536 expect_hashsize=1024", "missing"}}})
	n.run.fail = func(c Command) error {
		if c.Name == "modprobe" && c.Args[0] == "missing" {
			return errors.New("modprobe: FATAL: Module missing not found")
		}
		return nil
	}
	err := modulesStep(t.Context(), n.Context)
	if err == nil || !strings.Contains(err.Error(), "Module missing not found") {
		t.Errorf("modulesStep = %v, want the failed modprobe", err)
	}
	want := []string{"modprobe br_netfilter", "modprobe nf_conntrack hashsize=65536 expect_hashsize=1024", "modprobe missing"}
	if diff := cmp.Diff(want, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if got, want := n.read(t, modulesLoadFile), header+"br_netfilter\nnf_conntrack\nmissing\n"; got != want {
		t.Errorf("%s = %q, want %q", modulesLoadFile, got, want)
	}
	if got, want := n.read(t, modprobeFile), header+"options nf_conntrack hashsize=65536 expect_hashsize=1024\n"; got != want {
		t.Errorf("%s = %q, want %q", modprobeFile, got, want)
	}

	n.Config = &nodeconfig.Config{}
	n.step(t, modulesStep)
	if n.exists(modulesLoadFile) || n.exists(modprobeFile) {
		t.Error("module files remain after the config dropped the modules")
	}
}

func TestSysctl(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Sysctl: map[string]string{"vm.swappiness": "10", "net.ipv4.ip_forward": "1"}}})
	n.step(t, sysctlStep)
	if got, want := n.read(t, sysctlFile), header+"net.ipv4.ip_forward = 1\nvm.swappiness = 10\n"; got != want {
		t.Errorf("%s = %q, want %q", sysctlFile, got, want)
	}
	if got, want := n.run.lines(n.Root), []string{"sysctl -p /etc/sysctl.d/90-k3os.conf"}; !cmp.Equal(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}

	n.Config, n.run.calls = &nodeconfig.Config{}, nil
	n.step(t, sysctlStep)
	if n.exists(sysctlFile) {
		t.Errorf("%s remains after the config dropped sysctl", sysctlFile)
	}
	if len(n.run.calls) != 0 {
		t.Errorf("commands = %q, want none", n.run.lines(n.Root))
	}
}

func TestDNSNTP(t *testing.T) {
	tests := []struct {
		name           string
		k              nodeconfig.K3OS
		resolved, time string
	}{
		{"both", nodeconfig.K3OS{DNSNameservers: []string{"1.1.1.1", "9.9.9.9"}, NTPServers: []string{"ntp1", "ntp2"}},
			header + "[Resolve]\nDNS=1.1.1.1 9.9.9.9\n", header + "[Time]\nNTP=ntp1 ntp2\n"},
		{"dns only", nodeconfig.K3OS{DNSNameservers: []string{"1.1.1.1"}}, header + "[Resolve]\nDNS=1.1.1.1\n", ""},
		{"none", nodeconfig.K3OS{}, "", ""},
	}
	// One node for all cases: each must also clean up after the one before.
	n := newNode(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n.Config = &nodeconfig.Config{K3OS: tt.k}
			n.step(t, dnsNTPStep)
			if got := n.read(t, resolvedFile); got != tt.resolved {
				t.Errorf("%s = %q, want %q", resolvedFile, got, tt.resolved)
			}
			if got := n.read(t, timesyncdFile); got != tt.time {
				t.Errorf("%s = %q, want %q", timesyncdFile, got, tt.time)
			}
		})
	}
}
