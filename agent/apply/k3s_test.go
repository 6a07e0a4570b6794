package apply

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestK3sConfig(t *testing.T) {
	tests := []struct {
		name       string
		k          nodeconfig.K3OS
		config     string // after the header
		defaults   string // after the header
		tokenWrite bool
	}{
		{"cluster-init", nodeconfig.K3OS{Role: "cluster-init", Token: "tok", Labels: map[string]string{"zone": "a"}},
			"cluster-init: true\ntoken-file: /etc/rancher/k3s/token\nwrite-kubeconfig-mode: \"0600\"\nnode-label:\n  - k3os.io/mode=local\n  - k3os.io/version=0.1.0\n  - zone=a\n",
			"K3S_MODE=server\nK3S_ARGS=\"\"\n", true},
		{"joining server", nodeconfig.K3OS{Role: "server", ServerURL: "https://k3s-1:6443", Token: "tok", DatastoreEndpoint: "postgres://u:p@db/k3s"},
			"server: https://k3s-1:6443\ntoken-file: /etc/rancher/k3s/token\ndatastore-endpoint: postgres://u:p@db/k3s\nwrite-kubeconfig-mode: \"0600\"\nnode-label:\n  - k3os.io/mode=local\n  - k3os.io/version=0.1.0\n",
			"K3S_MODE=server\nK3S_ARGS=\"\"\n", true},
		{"single server", nodeconfig.K3OS{},
			"write-kubeconfig-mode: \"0600\"\nnode-label:\n  - k3os.io/mode=local\n  - k3os.io/version=0.1.0\n",
			"K3S_MODE=server\nK3S_ARGS=\"\"\n", false},
		{"agent from k3s_args", nodeconfig.K3OS{ServerURL: "https://k3s-1:6443", Token: "tok", Taints: []string{"a=b:NoSchedule"},
			K3sArgs: []string{"agent", "--node-ip=10.0.0.3", "--kubelet-arg=max-pods=50"}},
			"server: https://k3s-1:6443\ntoken-file: /etc/rancher/k3s/token\nnode-label:\n  - k3os.io/mode=local\n  - k3os.io/version=0.1.0\nnode-taint:\n  - a=b:NoSchedule\n",
			"K3S_MODE=agent\nK3S_ARGS=\"--node-ip=10.0.0.3 --kubelet-arg=max-pods=50\"\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, &nodeconfig.Config{K3OS: tt.k})
			writeTestFile(t, n.Root, k3sTokenFile, "stale")
			n.step(t, k3sStep)
			if got := n.read(t, k3sConfigFile); got != header+tt.config {
				t.Errorf("config.yaml = %q, want %q", got, header+tt.config)
			}
			if got := n.read(t, k3sDefaults); got != header+tt.defaults {
				t.Errorf("%s = %q, want %q", k3sDefaults, got, header+tt.defaults)
			}
			wantToken := ""
			if tt.tokenWrite {
				wantToken = "tok\n"
			}
			if got := n.read(t, k3sTokenFile); got != wantToken {
				t.Errorf("token file = %q, want %q", got, wantToken)
			}
		})
	}
}

func TestK3sFilesAndService(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Token: "tok", Environment: map[string]string{"NO_PROXY": "10.0.0.0/8,.local"}}})
	n.step(t, k3sStep)
	if len(n.run.calls) != 0 {
		t.Errorf("without k3s: commands = %q, want none", n.run.lines(n.Root))
	}
	for _, p := range []string{k3sConfigFile, k3sTokenFile, k3sEnvFile} {
		if got := n.mode(t, p); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", p, got)
		}
	}
	if got, want := n.read(t, k3sEnvFile), header+"NO_PROXY=10.0.0.0/8,.local\n"; got != want {
		t.Errorf("%s = %q, want %q", k3sEnvFile, got, want)
	}

	n.K3sPresent = true
	n.step(t, k3sStep)
	if diff := cmp.Diff([]string{"systemctl enable --now --no-block k3s.service"}, n.run.lines(n.Root)); diff != "" {
		t.Errorf("with k3s: commands (-want +got):\n%s", diff)
	}
}

// An agent given the agent token presents it and holds no server token;
// a server holds both; every file that holds one is root's alone.
func TestK3sTokens(t *testing.T) {
	agent := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{ServerURL: "https://s:6443", Token: "server-tok", AgentToken: "agent-tok"}})
	agent.step(t, k3sStep)
	if got := agent.read(t, k3sTokenFile); got != "agent-tok\n" {
		t.Errorf("agent's token file = %q, want the agent token", got)
	}
	for _, f := range []string{k3sConfigFile, k3sTokenFile, k3sDefaults, k3sEnvFile} {
		if strings.Contains(agent.read(t, f), "server-tok") {
			t.Errorf("the agent's %s holds the server token", f)
		}
	}
	if agent.read(t, k3sAgentTokenFile) != "" {
		t.Error("an agent has an agent-token file")
	}
	server := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Role: "cluster-init", Token: "server-tok", AgentToken: "agent-tok"}})
	server.step(t, k3sStep)
	if server.read(t, k3sTokenFile) != "server-tok\n" || server.read(t, k3sAgentTokenFile) != "agent-tok\n" ||
		!strings.Contains(server.read(t, k3sConfigFile), "agent-token-file: "+k3sAgentTokenFile) {
		t.Errorf("server: token %q, agent token %q, config %q", server.read(t, k3sTokenFile), server.read(t, k3sAgentTokenFile), server.read(t, k3sConfigFile))
	}
	for _, f := range []string{k3sConfigFile, k3sTokenFile, k3sAgentTokenFile, k3sDefaults, k3sEnvFile} {
		if fi, err := os.Stat(server.path(f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", f, fi.Mode(), err)
		}
	}
}

func TestK3sBadArgs(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{K3sArgs: []string{"server", "--a=1", "--b=two words"}}})
	n.K3sPresent = true
	err := k3sStep(t.Context(), n.Context)
	if err == nil || !strings.Contains(err.Error(), "k3s_args item 2") || strings.Contains(err.Error(), "two words") {
		t.Errorf("k3sStep = %v, want an error naming the item, not its value", err)
	}
	if len(n.run.calls) != 0 {
		t.Errorf("commands = %q, want none: k3s is not started on a config it cannot have", n.run.lines(n.Root))
	}
}

func TestNodeLabels(t *testing.T) {
	tests := []struct {
		name    string
		labels  map[string]string
		version string
		want    []string
	}{
		{"defaults", nil, "0.1.0", []string{"k3os.io/mode=local", "k3os.io/version=0.1.0"}},
		{"overridden and sorted", map[string]string{"k3os.io/mode": "custom", "a": "b"}, "0.1.0",
			[]string{"a=b", "k3os.io/mode=custom", "k3os.io/version=0.1.0"}},
		{"version made a label value", nil, "v0.1.0+dirty", []string{"k3os.io/mode=local", "k3os.io/version=v0.1.0-dirty"}},
		{"no version", nil, "", []string{"k3os.io/mode=local"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, nodeLabels(tt.labels, tt.version)); diff != "" {
				t.Errorf("nodeLabels(%v, %q) (-want +got):\n%s", tt.labels, tt.version, diff)
			}
		})
	}
}
