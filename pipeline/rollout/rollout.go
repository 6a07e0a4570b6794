// Package rollout upgrades a cluster's nodes one at a time over SSH:
// servers first, then agents; each node gets its bundle on the standard
// input of `sudo k3os upgrade -`, reboots into a trial of the new version,
// and the rollout waits until the node runs that version committed and is
// healthy (k3s Ready where it runs k3s) before it moves on. The first
// failure stops it, naming the node and why.
package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/agent/apply"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// Node is one node of a rollout.
type Node struct {
	// Name is its config's (a MAC); Hostname its node name; Role its
	// k3s role.
	Name, Hostname, Role string
	// Addr is where SSH reaches it: host or host:port.
	Addr string
	// Bundle is the file it is upgraded with.
	Bundle string
}

// Rollout is one rollout of a version.
type Rollout struct {
	Nodes []Node
	// SSH is the ssh command and its options; the node's address and the
	// command follow. User is the login (rancher).
	SSH  []string
	User string
	// Exec, when set, runs a command on a node instead of SSH (the boot
	// test reaches its machines through its own SSH client).
	Exec func(ctx context.Context, n Node, stdin io.Reader, command string) (string, error)
	// Version is the system version the nodes must end up running.
	Version string
	// Drain cordons and drains each node before its upgrade (from a
	// server), and uncordons it after.
	Drain bool
	// Timeout bounds one node's upgrade, from the copy to healthy.
	Timeout time.Duration
	// Poll is how often a rebooting node is asked again (5 s).
	Poll time.Duration
	Out  io.Writer
}

// NodesOf are the nodes of a cluster config directory, servers first,
// each reached at its static address (k3os.network) or its hostname, with
// the bundle bundleFor names. default.yaml is left out: the build cannot
// know which nodes it serves.
func NodesOf(c *nodeconfig.Cluster, bundleFor func(node string) string) ([]Node, []string) {
	var nodes []Node
	var skipped []string
	for _, n := range c.Nodes {
		if n.MAC == "" {
			skipped = append(skipped, nodeconfig.DefaultName+".yaml: the nodes it serves are not known here; upgrade them with k3os upgrade")
			continue
		}
		cfg := &n.Doc.Config
		host := apply.Hostname(cfg, n.MAC)
		addr := host
		for _, ifc := range cfg.K3OS.Network {
			if ip, _, ok := strings.Cut(ifc.Address, "/"); ok && ifc.Address != "" {
				addr = ip
				break
			}
		}
		nodes = append(nodes, Node{Name: n.MAC, Hostname: host, Role: cfg.Role(), Addr: addr, Bundle: bundleFor(n.MAC)})
	}
	rank := map[string]int{nodeconfig.RoleClusterInit: 0, nodeconfig.RoleServer: 1, nodeconfig.RoleAgent: 2}
	sort.SliceStable(nodes, func(i, j int) bool { return rank[nodes[i].Role] < rank[nodes[j].Role] })
	return nodes, skipped
}

func (r *Rollout) say(format string, args ...any) { fmt.Fprintf(r.Out, format+"\n", args...) }

// Run upgrades the nodes in order and stops at the first failure.
func (r *Rollout) Run(ctx context.Context) error {
	if r.Poll == 0 {
		r.Poll = 5 * time.Second
	}
	if r.Timeout == 0 {
		r.Timeout = 20 * time.Minute
	}
	for i, n := range r.Nodes {
		start := time.Now()
		r.say("rollout: %s (%s, %s) %d of %d: upgrading to %s", n.Hostname, n.Name, n.Role, i+1, len(r.Nodes), r.Version)
		if err := r.node(ctx, n); err != nil {
			return fmt.Errorf("rollout stopped at %s (%s): %w", n.Hostname, n.Addr, err)
		}
		r.say("rollout: %s runs %s, committed and healthy, after %s", n.Hostname, r.Version, time.Since(start).Round(time.Second))
	}
	return nil
}

func (r *Rollout) node(ctx context.Context, n Node) error {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	if _, err := r.run(ctx, n, nil, "k3os status"); err != nil {
		return fmt.Errorf("k3os status: %w", err)
	}
	// The kubectl link, not "k3s kubectl", which a k3s built from source
	// refuses (see the health check).
	drainer := r.drainer(n)
	if r.Drain && drainer != nil {
		r.say("rollout: draining %s", n.Hostname)
		if _, err := r.run(ctx, *drainer, nil, "sudo kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout=5m "+n.Hostname); err != nil {
			return fmt.Errorf("draining: %w", err)
		}
	}
	f, err := os.Open(n.Bundle)
	if err != nil {
		return err
	}
	out, err := r.run(ctx, n, f, "sudo k3os upgrade -")
	f.Close()
	already := strings.Contains(out, "the node already runs "+r.Version)
	switch {
	case already:
		r.say("rollout: %s already runs %s", n.Hostname, r.Version)
	case strings.Contains(out, "upgrade refused:"), strings.Contains(out, "k3os:"):
		return errors.New(lastLine(out))
	case err != nil && !strings.Contains(out, "rebooting to try"):
		return fmt.Errorf("k3os upgrade: %w: %s", err, lastLine(out))
	}
	rebooted := time.Now()
	if err := r.waitCommitted(ctx, n); err != nil {
		return err
	}
	if !already {
		r.say("rollout: %s was healthy on %s %s after its upgrade rebooted it", n.Hostname, r.Version, time.Since(rebooted).Round(time.Second))
	}
	if r.Drain && drainer != nil {
		if _, err := r.run(ctx, *drainer, nil, "sudo kubectl uncordon "+n.Hostname); err != nil {
			return fmt.Errorf("uncordon: %w", err)
		}
	}
	return nil
}

// drainer is the node kubectl runs on for n: n itself when it is a
// server, else the first server.
func (r *Rollout) drainer(n Node) *Node {
	if n.Role != nodeconfig.RoleAgent {
		return &n
	}
	for i := range r.Nodes {
		if r.Nodes[i].Role != nodeconfig.RoleAgent {
			return &r.Nodes[i]
		}
	}
	return nil
}

// waitCommitted waits until the node is back, runs the version committed
// and says it is healthy; a rollback ends the wait with its reason.
func (r *Rollout) waitCommitted(ctx context.Context, n Node) error {
	last := ""
	for {
		status, err := r.run(ctx, n, nil, "k3os status")
		if err == nil {
			last = status
			switch v := running(status); {
			case v == r.Version && field(status, "committed:") == r.Version:
				if _, err := r.run(ctx, n, nil, "k3os health"); err == nil {
					return nil
				}
			case v != r.Version && strings.Contains(status, "rolled back"):
				return fmt.Errorf("the node rolled back to %s: %s", v, why(status))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not committed and healthy on %s in time; last status:\n%s", r.Version, last)
		case <-time.After(r.Poll):
		}
	}
}

// run runs a command on a node over SSH, with stdin when given, and
// returns what it printed.
func (r *Rollout) run(ctx context.Context, n Node, stdin io.Reader, command string) (string, error) {
	if r.Exec != nil {
		return r.Exec(ctx, n, stdin, command)
	}
	args := append([]string{}, r.SSH[1:]...)
	host, port, err := net.SplitHostPort(n.Addr)
	if err != nil {
		host, port = n.Addr, ""
	}
	if port != "" {
		args = append(args, "-p", port)
	}
	args = append(args, r.User+"@"+host, command)
	cmd := exec.CommandContext(ctx, r.SSH[0], args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &out, stdin
	err = cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// running reads the running version from `k3os status`.
func running(status string) string { return field(status, "running:") }

// field reads the version of a line of `k3os status`.
func field(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			v, _, _ = strings.Cut(strings.TrimSpace(v), ",")
			return v
		}
	}
	return ""
}

func why(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "why:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(k3os status gives no reason)"
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
