package vmtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// The k3s cases' nodes: a server and an agent on a private link, and a
// server whose datastore is PostgreSQL on the host.
const (
	ServerMAC   = "52:54:00:6b:33:11"
	AgentMAC    = "52:54:00:6b:33:12"
	PostgresMAC = "52:54:00:6b:33:21"
	// What the agent's config asks for.
	AgentLabelKey, AgentLabelValue = "k3os.io/pool", "edge"
	AgentTaint                     = "k3os.io/dedicated=edge:NoSchedule"

	linkIface    = "eth0" // the link's interface (see Machine.Link)
	serverLinkIP = "192.168.77.1"
	agentLinkIP  = "192.168.77.2"
	// The datastore's credentials: it listens on the host's loopback only,
	// for the length of the case.
	postgresUser, postgresPassword, postgresDB = "k3s", "vmtest-datastore", "k3s"
	// slirpHost is the host's loopback as the user network shows it.
	slirpHost = "10.0.2.2"
)

// Bounds on reaching Ready under QEMU's emulation on 2 cores.
const (
	toReady     = 12 * time.Minute
	toTwoReady  = 20 * time.Minute
	readyPoll   = 5 * time.Second
	k3sNotReady = "not Ready"
)

// EmulationK3sArgs are the arguments k3s needs to come up under QEMU's
// emulation, where everything runs some ten times slower than on a Pi:
//
//   - before 1.25, the kubelet's CSI migration gives up while the apiserver
//     still builds its OpenAPI spec, and k3s crash-loops (the gate is
//     locked on from 1.25, and must not be set);
//   - on servers, the controller manager, scheduler and cloud controller
//     miss their 10 s leader-lease renewals and k3s exits; the test's
//     servers are each the only one of their cluster, with no one to
//     elect.
func EmulationK3sArgs(version string, server bool) []string {
	var args []string
	var major, minor int
	if _, err := fmt.Sscanf(version, "v%d.%d", &major, &minor); err == nil && major == 1 && minor < 25 {
		args = append(args, "--kubelet-arg=feature-gates=CSIMigration=false")
	}
	if server {
		for _, c := range []string{"kube-controller-manager", "kube-scheduler", "kube-cloud-controller-manager"} {
			args = append(args, "--"+c+"-arg=leader-elect=false")
		}
	}
	return args
}

// EmulationHAK3sArgs are EmulationK3sArgs for servers that are not alone
// (go tool mage try runs a user's HA control plane): their controllers
// must elect a leader, so the leases are made long instead of the
// election turned off.
func EmulationHAK3sArgs(version string, server bool) []string {
	args := EmulationK3sArgs(version, false)
	if server {
		for _, c := range []string{"kube-controller-manager", "kube-scheduler", "kube-cloud-controller-manager"} {
			args = append(args, "--"+c+"-arg=leader-elect-lease-duration=120s", "--"+c+"-arg=leader-elect-renew-deadline=90s",
				"--"+c+"-arg=leader-elect-retry-period=10s")
		}
	}
	return args
}

// linkNode is a k3s node on the private link between the machines: k3s
// must use the link's address there, since the user network gives every
// machine the same one.
func (c Cluster) linkNode(mac, hostname, ip string, server bool, k nodeconfig.K3OS) Node {
	k.K3sArgs = append([]string{"--node-ip=" + ip, "--flannel-iface=" + linkIface}, EmulationK3sArgs(c.K3sVersion, server)...)
	k.Network = map[string]nodeconfig.Interface{linkIface: {Address: ip + "/24"}}
	return Node{MAC: mac, Config: nodeconfig.Config{Hostname: hostname, SSHAuthorizedKeys: []string{c.publicKey()}, K3OS: k}}
}

// twoNodes are the k3s-two-nodes case's server and agent. The agent's
// config holds the server token too, as a shared cluster.yaml gives it: the
// build must leave it out of the agent's card.
func (c Cluster) twoNodes() []Node {
	return []Node{
		c.linkNode(ServerMAC, "k3os-server", serverLinkIP, true, nodeconfig.K3OS{Role: nodeconfig.RoleClusterInit,
			Token: c.ServerToken, AgentToken: c.AgentToken}),
		c.linkNode(AgentMAC, "k3os-agent", agentLinkIP, false, nodeconfig.K3OS{
			ServerURL: "https://" + serverLinkIP + ":6443", Token: c.ServerToken, AgentToken: c.AgentToken,
			Labels: map[string]string{AgentLabelKey: AgentLabelValue}, Taints: []string{AgentTaint},
		}),
	}
}

// postgresNode is a server whose datastore is PostgreSQL on the test host.
func (c Cluster) postgresNode() Node {
	return Node{MAC: PostgresMAC, Config: nodeconfig.Config{
		Hostname: "k3os-pg", SSHAuthorizedKeys: []string{c.publicKey()},
		K3OS: nodeconfig.K3OS{Role: nodeconfig.RoleServer, Token: "vmtest-token",
			DatastoreEndpoint: fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", postgresUser, postgresPassword, slirpHost, c.PostgresPort, postgresDB),
			K3sArgs:           EmulationK3sArgs(c.K3sVersion, true)},
	}}
}

// skipError is a case's or a stage's reason for not running on this image.
type skipError string

func (e skipError) Error() string { return string(e) }

// k3sMissing is nil when a case needs no k3s or the image carries it,
// else why the case is skipped (or fails, under K3OS_REQUIRE_K3S_READY).
func (s *Suite) k3sMissing(c *Case) error {
	if !c.NeedsK3s || s.K3s {
		return nil
	}
	if s.RequireK3s {
		return fmt.Errorf("K3OS_REQUIRE_K3S_READY is set but the image carries no k3s")
	}
	return skipError("the image was built without k3s (K3S=none); build with k3s to run it")
}

// apiClient waits for the server's kubeconfig and returns a client that
// reaches the server's API through the port forwarded from the host.
func (s *Suite) apiClient(ctx context.Context, m *Machine, sess *Session) (*APIClient, error) {
	deadline := time.Now().Add(toReady)
	for {
		kc, err := sess.Run("sudo cat /etc/rancher/k3s/k3s.yaml") // 0600: the cluster's keys
		if err == nil {
			os.WriteFile(filepath.Join(m.Dir, "kubeconfig"), []byte(kc), 0o600)
			var api *APIClient
			if api, err = NewAPIClient([]byte(kc), m.APIPort); err == nil {
				return api, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no usable kubeconfig from k3s within %s: %w", toReady, err)
		}
		if err := sleep(ctx, readyPoll); err != nil {
			return nil, err
		}
	}
}

// waitReady waits until node is Ready both on the server (kubectl there)
// and from the host (the API through the forwarded port), and marks the
// time on m, the node's machine.
func (s *Suite) waitReady(ctx context.Context, m *Machine, sess *Session, api *APIClient, node string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		out, _ := sess.Run("sudo kubectl get node " + node + " --no-headers 2>&1")
		f := strings.Fields(out)
		onNode := len(f) > 1 && f[0] == node && f[1] == "Ready"
		n, err := api.Node(ctx, node)
		switch {
		case err != nil:
			last = "from the host: " + err.Error()
		case !n.Ready(m.start):
			last = "from the host: " + k3sNotReady + " since power-on"
		case !onNode:
			last = "on the node: " + out
		default:
			d := m.Mark("k3s Ready")
			s.logf("%s: k3s node %s Ready %.0fs after power-on (kubelet %s), on the node and from the host", m.Name, node, d.Seconds(), n.Status.NodeInfo.KubeletVersion)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("k3s node %s not Ready within %s (last: %s)", node, timeout, last)
		}
		if err := sleep(ctx, readyPoll); err != nil {
			return err
		}
	}
}

// k3sDiagnostics keeps what explains a k3s failure beside the console log.
func (s *Suite) k3sDiagnostics(m *Machine, sess *Session) {
	s.keepK3sJournal(m, sess)
	keepOutputs(m, sess, map[string]string{
		// The release's check-config script is unpacked by its wrapper;
		// a k3s built from cmd/server has none.
		"k3s-check-config.txt": "sudo k3s check-config 2>&1 || echo \"(no check-config in this k3s: only the release binary carries the script)\"; uname -a; cat /proc/cmdline",
		"k3s-nodes.txt":        "sudo kubectl get nodes -o wide 2>&1; sudo kubectl get pods -A -o wide 2>&1",
	})
	s.logf("%s: console, k3s journal and check-config kept in %s", m.Name, m.Dir)
}

// keepK3sJournal keeps k3s's journal of a machine that passed: where its
// time to Ready went.
func (s *Suite) keepK3sJournal(m *Machine, sess *Session) {
	keepOutputs(m, sess, map[string]string{"k3s-journal.txt": "sudo journalctl -b -u k3s --no-pager -o short-monotonic"})
}

// serverReady waits for a server's API and for its node to be Ready.
func (s *Suite) serverReady(ctx context.Context, m *Machine, sess *Session, node string, timeout time.Duration) (*APIClient, error) {
	api, err := s.apiClient(ctx, m, sess)
	if err != nil {
		return nil, err
	}
	return api, s.waitReady(ctx, m, sess, api, node, timeout)
}

// checkK3s proves the node-by-mac node Ready when the image carries k3s.
func (s *Suite) checkK3s(ctx context.Context, m *Machine, sess *Session, node string) error {
	if _, err := s.serverReady(ctx, m, sess, node, toReady); err != nil {
		s.k3sDiagnostics(m, sess)
		return err
	}
	s.keepK3sJournal(m, sess)
	return nil
}

// TwoNodes boots two machines from the one image, linked like two Pis on a
// switch: a cluster-init server and an agent that joins it by its config;
// both must be Ready, the agent with the labels and taints it asked for.
func (s *Suite) TwoNodes(ctx context.Context, c *Case) error {
	serverName, agentName := s.Cluster.node(ServerMAC).Config.Hostname, s.Cluster.node(AgentMAC).Config.Hostname
	ports, err := FreeUDPPorts(2)
	if err != nil {
		return err
	}
	server, err := s.machine("k3s-server", ServerMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	server.Link = &Link{Port: ports[0], PeerPort: ports[1], UserMAC: "52:54:00:6b:34:11"}
	agent, err := s.machine("k3s-agent", AgentMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	agent.Link = &Link{Port: ports[1], PeerPort: ports[0], UserMAC: "52:54:00:6b:34:12"}
	// A lean agent: the Pi 3 / Zero 2 class of the cluster.
	agent.Memory = 512
	for _, m := range []*Machine{server, agent} {
		if err := s.boot(ctx, m, true); err != nil {
			return err
		}
	}
	sess, err := Dial(ctx, server.SSHPort, "rancher", s.Key, toSSH)
	if err != nil {
		return err
	}
	defer sess.Close()
	agentSess, err := Dial(ctx, agent.SSHPort, "rancher", s.Key, toSSH)
	if err != nil {
		return err
	}
	defer agentSess.Close()
	if err := check(agentSess, "the agent chose its config", "hostname", agentName); err != nil {
		return err
	}
	if err := check(agentSess, "the agent's link address", "ip -4 -o addr show dev "+linkIface+" | awk '{print $4}'", agentLinkIP+"/24"); err != nil {
		return err
	}
	api, err := s.serverReady(ctx, server, sess, serverName, toTwoReady)
	if err == nil {
		err = s.waitReady(ctx, agent, sess, api, agentName, toTwoReady)
	}
	if err == nil {
		err = s.checkAgentNode(ctx, api, agentName)
	}
	if err != nil {
		s.k3sDiagnostics(server, sess)
		s.k3sDiagnostics(agent, agentSess)
		return err
	}
	s.memoryInUse(server, sess, "k3s server Ready")
	s.memoryInUse(agent, agentSess, "k3s agent Ready")
	if err := s.stage("workloads", s.workloads(ctx, []wlNode{{server, sess, serverName}, {agent, agentSess, agentName}})); err != nil {
		return err
	}
	s.keepK3sJournal(server, sess)
	s.keepK3sJournal(agent, agentSess)
	s.record(server, "k3s two nodes: server")
	s.record(agent, "k3s two nodes: agent")
	return nil
}

// checkAgentNode reads the agent's node from the API: the labels and
// taints of its config, and the link address.
func (s *Suite) checkAgentNode(ctx context.Context, api *APIClient, agentName string) error {
	n, err := api.Node(ctx, agentName)
	if err != nil {
		return err
	}
	if got := n.Metadata.Labels[AgentLabelKey]; got != AgentLabelValue {
		return fmt.Errorf("node %s: label %s=%q, want %q (labels %v)", agentName, AgentLabelKey, got, AgentLabelValue, n.Metadata.Labels)
	}
	if !n.HasTaint(AgentTaint) {
		return fmt.Errorf("node %s: no taint %s (taints %v)", agentName, AgentTaint, n.Spec.Taints)
	}
	if got := n.Metadata.Labels["k3os.io/mode"]; got != "local" {
		return fmt.Errorf("node %s: label k3os.io/mode=%q, want local", agentName, got)
	}
	s.logf("node %s carries %s=%s and the taint %s", agentName, AgentLabelKey, AgentLabelValue, AgentTaint)
	return nil
}

// Postgres boots a server whose datastore_endpoint is a PostgreSQL the
// test starts on the host; the node must be Ready with its state in that
// database.
func (s *Suite) Postgres(ctx context.Context, c *Case) error {
	name := c.Node(PostgresMAC).Config.Hostname
	db, err := s.startPostgres(ctx)
	if err != nil {
		return err
	}
	defer db.Stop()
	m, err := s.machine(c.Name, PostgresMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	// A server whose datastore is elsewhere needs no etcd: 1 GiB.
	m.Memory = 1024
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	defer sess.Close()
	if _, err := s.serverReady(ctx, m, sess, name, toReady); err != nil {
		s.k3sDiagnostics(m, sess)
		return err
	}
	// kine, k3s's datastore shim, keeps every key in its table "kine".
	rows, err := db.Query(ctx, "SELECT count(*) FROM kine")
	if err != nil {
		return fmt.Errorf("reading k3s's state in PostgreSQL: %w", err)
	}
	nodes, err := db.Query(ctx, "SELECT count(*) FROM kine WHERE name LIKE '/registry/minions/"+name+"'")
	if err != nil {
		return err
	}
	if rows == "0" || nodes == "0" {
		return fmt.Errorf("PostgreSQL's kine table has %s rows, %s for node %s: k3s's state is not there", rows, nodes, name)
	}
	s.logf("k3s state in PostgreSQL: %s rows in table kine, node %s among them", rows, name)
	s.memoryInUse(m, sess, "k3s server (PostgreSQL datastore) Ready")
	if err := s.stage("workloads", s.workloads(ctx, []wlNode{{m, sess, name}})); err != nil {
		return err
	}
	s.keepK3sJournal(m, sess)
	s.record(m, "k3s postgres")
	return nil
}

// stage turns a stage's skip into a line of the log: the case goes on.
func (s *Suite) stage(name string, err error) error {
	var skip skipError
	if errors.As(err, &skip) {
		s.logf("the %s stage skipped: %s", name, skip)
		return nil
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// portOpen says whether something accepts TCP connections on the loopback port.
func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}
