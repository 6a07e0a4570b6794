package rollout

import (
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestNodesOf(t *testing.T) {
	node := func(mac, role, addr string) *nodeconfig.Node {
		n := &nodeconfig.Node{MAC: mac, Doc: &nodeconfig.Doc{}}
		n.Doc.Config.K3OS.Role = role
		if addr != "" {
			n.Doc.Config.K3OS.Network = map[string]nodeconfig.Interface{"eth0": {Address: addr}}
		}
		return n
	}
	c := &nodeconfig.Cluster{Nodes: []*nodeconfig.Node{
		node("dc:a6:32:00:00:01", nodeconfig.RoleAgent, "192.168.1.11/24"),
		node("dc:a6:32:00:00:02", nodeconfig.RoleServer, ""),
		node("dc:a6:32:00:00:03", nodeconfig.RoleClusterInit, "192.168.1.10/24"),
		node("", nodeconfig.RoleAgent, ""),
	}}
	nodes, skipped := NodesOf(c, func(n string) string { return "b-" + n })
	var got []string
	for _, n := range nodes {
		got = append(got, n.Addr)
	}
	want := []string{"192.168.1.10", "k3os-000002", "192.168.1.11"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("order and addresses %v, want %v", got, want)
	}
	if nodes[0].Bundle != "b-dc:a6:32:00:00:03" || len(skipped) != 1 {
		t.Errorf("bundle %s, skipped %v", nodes[0].Bundle, skipped)
	}
}

func TestStatusLines(t *testing.T) {
	status := `running:   0.6.0, config card, kernel 6.12.117, slot 2
committed: 0.6.0, config card, slot 2
other:     0.6.1, config card, slot 3
last:      0.6.1 rolled back (config card) at 2026-12-01T10:00:00Z
           why: not healthy within 10m0s: k3s is activating, not active`
	if v := running(status); v != "0.6.0" {
		t.Errorf("running %q", v)
	}
	if w := why(status); w != "not healthy within 10m0s: k3s is activating, not active" {
		t.Errorf("why %q", w)
	}
}
