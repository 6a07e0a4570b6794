package vmtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// The test container image is a valid image: its config names the layer
// it carries, for the arm64 platform.
func TestAgentImage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "k3os-agent")
	os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755)
	b, err := agentImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Fatalf("layers %d, diff IDs %d; want 1 and 1", len(layers), len(cf.RootFS.DiffIDs))
	}
	if d, _ := layers[0].DiffID(); d != cf.RootFS.DiffIDs[0] {
		t.Errorf("layer diff ID %s, config says %s", d, cf.RootFS.DiffIDs[0])
	}
	if cf.Architecture != "arm64" || cf.Config.Entrypoint[0] != "/k3os-agent" {
		t.Errorf("config = %s %v", cf.Architecture, cf.Config.Entrypoint)
	}
}

func TestWriteCluster(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := (Cluster{Key: key, K3sVersion: "v1.21.2+k3s1", PostgresPort: 5433, ServerToken: "s", AgentToken: "a"}).Write(dir); err != nil {
		t.Fatal(err)
	}
	cluster, r := nodeconfig.LoadCluster(dir)
	if r.HasErrors() {
		t.Fatalf("the test cluster is not valid:\n%v", r)
	}
	byMAC := map[string]*nodeconfig.Config{}
	for _, n := range cluster.Nodes {
		byMAC[n.MAC] = &n.Doc.Config
	}
	agent, server, pg := byMAC[AgentMAC], byMAC[ServerMAC], byMAC[PostgresMAC]
	if agent == nil || server == nil || pg == nil {
		t.Fatalf("the k3s cases' nodes are missing: %v", byMAC)
	}
	if agent.Role() != nodeconfig.RoleAgent || agent.K3OS.ServerURL != "https://"+serverLinkIP+":6443" ||
		agent.K3OS.Labels[AgentLabelKey] != AgentLabelValue || agent.K3OS.Taints[0] != AgentTaint {
		t.Errorf("agent config = %+v", agent.K3OS)
	}
	if server.Role() != nodeconfig.RoleClusterInit || server.K3OS.Network[linkIface].Address != serverLinkIP+"/24" {
		t.Errorf("server config = %+v", server.K3OS)
	}
	wantArgs := []string{"--node-ip=" + agentLinkIP, "--flannel-iface=" + linkIface, "--kubelet-arg=feature-gates=CSIMigration=false"}
	if !slices.Equal(agent.K3OS.K3sArgs, wantArgs) {
		t.Errorf("agent k3s_args = %q, want %q", agent.K3OS.K3sArgs, wantArgs)
	}
	if pg.Role() != nodeconfig.RoleServer || pg.K3OS.DatastoreEndpoint != "postgres://k3s:vmtest-datastore@10.0.2.2:5433/k3s?sslmode=disable" {
		t.Errorf("datastore node config = %+v", pg.K3OS)
	}
	b, _ := os.ReadFile(filepath.Join(dir, NodeMAC+".yaml"))
	if !strings.Contains(string(b), key.PublicKey) || !strings.Contains(string(b), StaticIP+"/24") {
		t.Errorf("node config lacks the key or the address:\n%s", b)
	}
}

func TestEmulationK3sArgs(t *testing.T) {
	for version, want := range map[string]int{"v1.21.2+k3s1": 1, "v1.24.17+k3s1": 1, "v1.25.0+k3s1": 0, "v1.36.4+k3s1": 0, "": 0} {
		if got := EmulationK3sArgs(version, false); len(got) != want {
			t.Errorf("EmulationK3sArgs(%q, agent) = %q", version, got)
		}
		if got := EmulationK3sArgs(version, true); len(got) != want+3 || !strings.Contains(got[len(got)-1], "leader-elect=false") {
			t.Errorf("EmulationK3sArgs(%q, server) = %q", version, got)
		}
	}
}

func TestSelect(t *testing.T) {
	all := CaseNames()
	if len(all) != 9 || all[0] != "node-by-mac" {
		t.Errorf("CaseNames() = %v", all)
	}
	if got, err := Select(nil); err != nil || !slices.Equal(got, all) {
		t.Errorf("none named: %v %v", got, err)
	}
	// In the suite's order, whatever the order named.
	if got, err := Select([]string{"k3s-postgres", "node-by-mac"}); err != nil || !slices.Equal(got, []string{"node-by-mac", "k3s-postgres"}) {
		t.Errorf("two cases: %v %v", got, err)
	}
	if _, err := Select([]string{"k3s-postgress"}); err == nil || !strings.Contains(err.Error(), `no case "k3s-postgress"`) {
		t.Errorf("typo: err = %v", err)
	}
}

// The console says which version a boot ran, whole or mixed.
func TestBootedOf(t *testing.T) {
	u := &Upgrades{V1: "0.1.0", V1Kernel: "6.12.117", V2: "0.1.0.1", V2Kernel: "6.12.117-vmtest2"}
	console := "k3os-init: switching to k3os 0.1.0 (kernel 6.12.117, slot 2) after 3.1s\n" +
		"k3os 0.1.0: node k3os-upgrade configured: 12 steps ok\n" +
		"k3os-init: switching to k3os 0.1.0.1 (kernel 6.12.117-vmtest2, slot 3, a trial) after 3.0s\n" +
		"k3os 0.1.0.1: node k3os-upgrade configured: 12 steps ok\n"
	b, err := bootedOf(console)
	if err != nil || b.Version != "0.1.0.1" || b.Kernel != "6.12.117-vmtest2" || b.Slot != 3 || !b.Trial || b.Root != "0.1.0.1" {
		t.Fatalf("%+v %v", b, err)
	}
	if err := u.complete(b); err != nil {
		t.Error(err)
	}
	for _, mixed := range []booted{
		{Version: "0.1.0.1", Kernel: "6.12.117", Root: "0.1.0.1"},
		{Version: "0.1.0", Kernel: "6.12.117", Root: "0.1.0.1"},
		{Version: "0.2.0", Kernel: "6.12.117", Root: "0.2.0"},
	} {
		if err := u.complete(mixed); err == nil {
			t.Errorf("%+v passed as whole", mixed)
		}
	}
	if len(cutPoints(true)) < 20 || len(cutPoints(false)) < 5 {
		t.Errorf("%d cut points, %d by phase", len(cutPoints(true)), len(cutPoints(false)))
	}
}
