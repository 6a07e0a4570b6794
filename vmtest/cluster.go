package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// Cluster is what the boot test's cluster is made from: the image carries
// the configs of every case's nodes.
type Cluster struct {
	Key *Key
	// K3sVersion is the version of the k3s the image carries, which
	// decides what the nodes' k3s_args add for emulation (EmulationK3sArgs).
	K3sVersion string
	// PostgresPort is where the datastore case's PostgreSQL listens on the
	// host; the node reaches it through QEMU's user network.
	PostgresPort int
	// ServerToken and AgentToken are the k3s cases' cluster: the servers
	// hold both, the agent only the agent token (the agent-secrets case
	// greps its whole disk for the server token).
	ServerToken, AgentToken string
}

// Case is one boot case: the nodes it boots, whether it needs k3s in the
// image, and what it checks.
type Case struct {
	Name     string
	Nodes    []Node
	NeedsK3s bool
	Run      func(s *Suite, ctx context.Context, c *Case) error
}

// Node is one config of a case, as typed values: a renamed config key is
// a compile error here, not a test that silently checks nothing.
type Node struct {
	// MAC picks the file, <MAC>.yaml; "" is default.yaml.
	MAC    string
	Config nodeconfig.Config
}

// Node returns the case's node of a MAC.
func (c *Case) Node(mac string) *Node {
	for i := range c.Nodes {
		if c.Nodes[i].MAC == mac {
			return &c.Nodes[i]
		}
	}
	panic("vmtest: case " + c.Name + " has no node " + mac)
}

// node returns the node of a MAC from any case: a case may boot another
// case's node.
func (c Cluster) node(mac string) Node {
	for _, k := range c.Cases() {
		for _, n := range k.Nodes {
			if n.MAC == mac {
				return n
			}
		}
	}
	panic("vmtest: no case has a node " + mac)
}

// Cases are the suite's cases, in the order they run.
func (c Cluster) Cases() []*Case {
	return []*Case{
		{Name: "node-by-mac", Nodes: []Node{c.byMACNode()}, Run: (*Suite).NodeByMAC},
		{Name: "default-config", Nodes: []Node{{Config: c.defaultNode()}}, Run: (*Suite).DefaultConfig},
		{Name: "usb-disk", Run: (*Suite).USBDisk},
		{Name: "agent-secrets", Nodes: c.twoNodes(), Run: (*Suite).AgentSecrets},
		{Name: "raspi4b-smoke", Run: (*Suite).Raspi4bSmoke},
		{Name: "upgrade", Nodes: []Node{c.upgradeNode(UpgradeMAC, "k3os-upgrade")}, Run: (*Suite).Upgrade},
		{Name: "power-cuts", Nodes: []Node{c.upgradeNode(PowerCutMAC, "k3os-power-cut")}, Run: (*Suite).PowerCuts},
		{Name: "k3s-two-nodes", NeedsK3s: true, Run: (*Suite).TwoNodes}, // agent-secrets' nodes
		{Name: "k3s-postgres", NeedsK3s: true, Nodes: []Node{c.postgresNode()}, Run: (*Suite).Postgres},
	}
}

// CaseNames are the cases' names, in the order they run.
func CaseNames() []string {
	var out []string
	for _, c := range (Cluster{}).Cases() {
		out = append(out, c.Name)
	}
	return out
}

// Write writes the config files of every case's nodes into dir, rendered
// through nodeconfig as the image build reads them.
func (c Cluster) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	written := map[string]string{}
	for _, k := range c.Cases() {
		for _, n := range k.Nodes {
			name := n.MAC
			if name == "" {
				name = nodeconfig.DefaultName
			}
			if other, dup := written[name]; dup {
				return fmt.Errorf("cases %s and %s both have a node %s", other, k.Name, name)
			}
			written[name] = k.Name
			b, err := nodeconfig.Marshal(&n.Config)
			if err != nil {
				return err
			}
			head := fmt.Sprintf("# boot case %s\n", k.Name)
			if err := os.WriteFile(filepath.Join(dir, name+".yaml"), append([]byte(head), b...), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c Cluster) publicKey() string {
	if c.Key == nil {
		return "" // CaseNames: the names alone
	}
	return c.Key.PublicKey
}

// The node-by-mac and default-config cases' nodes.
const (
	NodeMAC     = "52:54:00:6b:33:01"
	UnknownMAC  = "52:54:00:6b:33:99"
	USBMAC      = "52:54:00:6b:33:98"
	StaticIP    = "10.0.2.20"
	slirpDHCPIP = "10.0.2.15"
)

// byMACNode asks for every kind of setting the first boot then checks.
func (c Cluster) byMACNode() Node {
	return Node{MAC: NodeMAC, Config: nodeconfig.Config{
		Hostname:          "k3os-vmtest",
		SSHAuthorizedKeys: []string{c.publicKey()},
		WriteFiles: []nodeconfig.File{
			{Path: "/etc/k3os-test/secret", Content: "s3cret\n", Permissions: "0600"},
			// A relative path starts at / (as in k3OS).
			{Path: "etc/k3os-test/hello", Encoding: "b64", Content: "aGVsbG8K", Owner: "rancher"},
		},
		BootCmd: []string{"echo boot_cmd ran > /run/k3os-test-boot"},
		RunCmd:  []string{"echo run_cmd ran > /run/k3os-test-run"},
		K3OS: nodeconfig.K3OS{
			Modules:        []string{"ip_vs"},
			Sysctl:         map[string]string{"vm.swappiness": "13"},
			DNSNameservers: []string{"10.0.2.3"},
			Role:           nodeconfig.RoleClusterInit,
			Token:          "vmtest-token",
			Labels:         map[string]string{"k3os.io/test": "vmtest"},
			Network:        map[string]nodeconfig.Interface{"eth*": {Address: StaticIP + "/24", Gateway: "10.0.2.2"}},
			K3sArgs:        EmulationK3sArgs(c.K3sVersion, true),
		},
	}}
}

// defaultNode is default.yaml: any other node, on DHCP, named after its MAC.
func (c Cluster) defaultNode() nodeconfig.Config {
	return nodeconfig.Config{SSHAuthorizedKeys: []string{c.publicKey()}, K3OS: nodeconfig.K3OS{Token: "vmtest-token"}}
}
