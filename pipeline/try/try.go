// Package try boots a cluster's nodes in QEMU before any card is
// flashed: every node of the config directory from the one image, each
// with the MAC its file is named after, on one private link (static
// addresses as configured, DHCP from the host for the nodes that ask),
// and hands the user SSH to every node and a kubeconfig.
package try

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/agent/apply"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/vmtest"
)

// Node is one node of the cluster, as its config says.
type Node struct {
	MAC, Hostname, Role string
	// Static is its configured address on its wired port (ip/prefix), ""
	// for DHCP; Gateway the configured gateway.
	Static, Gateway string
}

// NodesOf are the nodes of a cluster directory (default.yaml has no MAC
// to boot a node with: it is left out).
func NodesOf(c *nodeconfig.Cluster) ([]Node, []string) {
	var nodes []Node
	var skipped []string
	for _, n := range c.Nodes {
		if n.MAC == "" {
			skipped = append(skipped, "default.yaml: it serves the nodes without a file of their own; try boots the nodes that have one")
			continue
		}
		cfg := &n.Doc.Config
		node := Node{MAC: n.MAC, Hostname: apply.Hostname(cfg, n.MAC), Role: cfg.Role()}
		for name, ifc := range cfg.K3OS.Network {
			if ifc.Address != "" && (name == "eth0" || strings.HasPrefix(name, "eth*") || name == "*") {
				node.Static, node.Gateway = ifc.Address, ifc.Gateway
			}
		}
		nodes = append(nodes, node)
	}
	// The order the nodes power on in: who starts the cluster, who joins it.
	order := map[string]int{nodeconfig.RoleClusterInit: 0, nodeconfig.RoleServer: 1, nodeconfig.RoleAgent: 2}
	slices.SortStableFunc(nodes, func(a, b Node) int { return order[a.Role] - order[b.Role] })
	return nodes, skipped
}

// Memory per node under emulation, by role, and the least each runs in.
const (
	serverMiB, serverMinMiB = 2048, 1024
	agentMiB, agentMinMiB   = 1024, 512
	hostReserveMiB          = 2048
)

// Memory gives each node its memory from its role, bounded by what the
// host has available (memAvailable, MiB): the defaults if they fit, else
// the same share of each default down to the minimums; an error says
// what the host lacks.
func Memory(nodes []Node, memAvailable int) ([]int, error) {
	want, least := 0, 0
	for _, n := range nodes {
		if n.Role == nodeconfig.RoleAgent {
			want, least = want+agentMiB, least+agentMinMiB
		} else {
			want, least = want+serverMiB, least+serverMinMiB
		}
	}
	budget := memAvailable - hostReserveMiB
	if budget < least {
		return nil, fmt.Errorf("the host has %d MiB available; %d nodes need at least %d MiB (%d MiB a server, %d MiB an agent) and %d MiB stay for the host: try fewer nodes (a CONFIG_DIR with some of them)",
			memAvailable, len(nodes), least, serverMinMiB, agentMinMiB, hostReserveMiB)
	}
	var out []int
	for _, n := range nodes {
		def, low := serverMiB, serverMinMiB
		if n.Role == nodeconfig.RoleAgent {
			def, low = agentMiB, agentMinMiB
		}
		m := def
		if want > budget {
			m = max(low, def*budget/want)
		}
		out = append(out, m)
	}
	return out, nil
}

// MemAvailable reads the host's available memory in MiB.
func MemAvailable() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb / 1024, err
		}
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable")
}

// Cluster is one run of try.
type Cluster struct {
	Nodes []Node
	// Image is the card every node boots from (a copy each).
	Image string
	// Dir holds each machine's files, the kubeconfig and the SSH key.
	Dir string
	// Key is the key try logs in with: the image's configs carry it.
	Key *vmtest.Key
	Run vmtest.Runner
	Out io.Writer
}

func (c *Cluster) say(format string, args ...any) { fmt.Fprintf(c.Out, format+"\n", args...) }

// plan works out the link: its subnet from the static addresses (or
// 192.168.77.0/24 when every node asks for DHCP), the router the configs
// name, and the host's address (that router when no node has it, else
// the highest free one).
func (c *Cluster) plan() (subnet *net.IPNet, host, router net.IP, taken []net.IP, err error) {
	for _, n := range c.Nodes {
		if n.Static == "" {
			continue
		}
		ip, sn, err := net.ParseCIDR(n.Static)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s: %w", n.Hostname, err)
		}
		if subnet == nil {
			subnet = sn
		} else if !subnet.Contains(ip) {
			return nil, nil, nil, nil, fmt.Errorf("%s's address %s is not on %s, the other nodes' link: try puts every node on one link", n.Hostname, n.Static, subnet)
		}
		taken = append(taken, ip)
		if g := net.ParseIP(n.Gateway); g != nil && router == nil {
			router = g
		}
	}
	if subnet == nil {
		_, subnet, _ = net.ParseCIDR("192.168.77.0/24")
	}
	host = router
	for _, t := range taken {
		if host != nil && t.Equal(host) {
			host = nil
		}
	}
	if host == nil {
		host = lastHost(subnet)
	}
	return subnet, host, router, taken, nil
}

// Up boots the cluster and keeps it up until ctx ends (Ctrl-C), then stops
// every machine and removes the link.
func (c *Cluster) Up(ctx context.Context) error {
	avail, err := MemAvailable()
	if err != nil {
		return err
	}
	mem, err := Memory(c.Nodes, avail)
	if err != nil {
		return err
	}
	subnet, host, router, taken, err := c.plan()
	if err != nil {
		return err
	}
	l, err := newLink(linkName, host, subnet, router, taken, len(c.Nodes))
	if err != nil {
		return fmt.Errorf("the cluster's link (try runs as root): %w", err)
	}
	defer l.Close()
	if err := l.serveDHCP(); err != nil {
		return err
	}
	c.say("try: %d nodes on the link %s (the host is %s there, serving DHCP); Ctrl-C stops them", len(c.Nodes), subnet, host)
	if err := os.WriteFile(filepath.Join(c.Dir, "ssh-key"), c.Key.PEM, 0o600); err != nil {
		return err
	}
	var mu sync.Mutex
	var machines []*vmtest.Machine
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range machines {
			m.Stop()
		}
	}()
	var fwds []*forward
	defer func() {
		for _, f := range fwds {
			f.Close()
		}
	}()
	// A node powers on once the servers before it are Ready: under
	// emulation, servers joining etcd together (and agents asking a server
	// still electing) starve each other for longer than they all take one
	// after another.
	ready := make([]chan struct{}, len(c.Nodes))
	var wg sync.WaitGroup
	errc := make(chan error, len(c.Nodes))
	lastServer := -1
	for i, n := range c.Nodes {
		ready[i] = make(chan struct{})
		ssh, err := newForward(l, func() string { return c.addr(l, n) + ":22" })
		if err != nil {
			return err
		}
		fwds = append(fwds, ssh)
		m := &vmtest.Machine{Name: n.Hostname, Board: "virt", Dir: filepath.Join(c.Dir, n.Hostname), Image: c.Image, MAC: n.MAC,
			Tap: l.taps[i], Spawn: l.spawn, Memory: mem[i], SSHPort: ssh.Port, DiskSize: "8G", Run: c.Run}
		if err := os.MkdirAll(m.Dir, 0o755); err != nil {
			return err
		}
		if err := m.PrepareDisk(ctx, m.DiskSize); err != nil {
			return err
		}
		// Servers power on one after another, so the last one before this
		// node being Ready means all of them are.
		after := lastServer
		if after >= 0 {
			c.say("try: %s powers on once %s is Ready", n.Hostname, c.Nodes[after].Hostname)
		}
		if n.Role != nodeconfig.RoleAgent {
			lastServer = i
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			isReady := func() { once.Do(func() { close(ready[i]) }) }
			defer isReady()
			if after >= 0 {
				select {
				case <-ready[after]:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
			if err := m.Start(ctx, ""); err != nil {
				errc <- fmt.Errorf("%s: %w", n.Hostname, err)
				return
			}
			mu.Lock()
			machines = append(machines, m)
			mu.Unlock()
			c.say("try: %s (%s, %s, %d MiB): powered on; console %s", n.Hostname, n.MAC, n.Role, mem[i], filepath.Join(m.Dir, "console.log"))
			go c.powerOnAgain(ctx, m)
			errc <- c.follow(ctx, m, n, l, isReady)
		}()
	}
	var api *forward
	if first := c.firstServer(); first != nil {
		if api, err = newForward(l, func() string { return c.addr(l, *first) + ":6443" }); err != nil {
			return err
		}
		fwds = append(fwds, api)
		go c.kubeconfig(ctx, *first, fwds[c.index(*first)].Port, api.Port)
	}
	for i, n := range c.Nodes {
		c.say("try: ssh -i %s -p %d rancher@127.0.0.1    # %s", filepath.Join(c.Dir, "ssh-key"), fwds[i].Port, n.Hostname)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-ctx.Done():
	case <-done:
	}
	c.say("try: stopping the nodes")
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

const linkName = "k3os-try"

// addr is where a node is on the link: its static address, or its lease.
func (c *Cluster) addr(l *link, n Node) string {
	if n.Static != "" {
		ip, _, _ := net.ParseCIDR(n.Static)
		return ip.String()
	}
	if ip := l.Lease(n.MAC); ip != nil {
		return ip.String()
	}
	return "0.0.0.0" // not yet: the dial fails, the client retries
}

func (c *Cluster) firstServer() *Node {
	for i := range c.Nodes {
		if c.Nodes[i].Role == nodeconfig.RoleClusterInit {
			return &c.Nodes[i]
		}
	}
	for i := range c.Nodes {
		if c.Nodes[i].Role != nodeconfig.RoleAgent {
			return &c.Nodes[i]
		}
	}
	return nil
}

func (c *Cluster) index(n Node) int {
	for i := range c.Nodes {
		if c.Nodes[i].MAC == n.MAC {
			return i
		}
	}
	return -1
}

// follow prints a node's stages as its console shows them, then its SSH
// login and, with k3s, its node Ready; it returns when ctx ends.
func (c *Cluster) follow(ctx context.Context, m *vmtest.Machine, n Node, l *link, ready func()) error {
	for _, st := range []struct{ stage, marker string }{
		{"initramfs", "k3os-init:"},
		{"root switched", "k3os-init: switching to k3os"},
		{"config applied", " configured: "},
	} {
		d, err := m.WaitFor(ctx, st.stage, st.marker, 15*time.Minute)
		if err != nil {
			return err
		}
		line := ""
		if st.stage == "config applied" {
			line = ": " + lastMatch(m.Console(), " configured: ")
		}
		c.say("try: %s: %s after %.0fs%s", n.Hostname, st.stage, d.Seconds(), line)
	}
	sess, err := vmtest.Dial(ctx, m.SSHPort, "rancher", c.Key, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Hostname, err)
	}
	defer sess.Close()
	c.say("try: %s: SSH up after %.0fs, at %s on the link", n.Hostname, m.Mark("sshd").Seconds(), c.addr(l, n))
	if out, _ := sess.Run("test -x " + apply.K3sBinary + " && echo k3s"); out != "k3s" {
		c.say("try: %s: the image carries no k3s (K3S=none)", n.Hostname)
		ready()
		<-ctx.Done()
		return ctx.Err()
	}
	for {
		out, err := sess.Run("k3os health")
		if err == nil && strings.Contains(out, "healthy") {
			c.say("try: %s: healthy, k3s Ready, after %.0fs", n.Hostname, m.Mark("k3s Ready").Seconds())
			ready()
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// powerOnAgain powers a machine on again whenever its guest restarts
// (an upgrade's reboot, a rollback's), as a Pi resets, until ctx ends.
func (c *Cluster) powerOnAgain(ctx context.Context, m *vmtest.Machine) {
	const never = time.Duration(1<<63 - 1) // the machine runs until ctx ends
	for {
		err := m.Wait(never)
		// Ctrl-C stops the machines: that exit is no reboot to follow.
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = m.Start(ctx, "")
		}
		if err != nil {
			c.say("try: %s: %v", m.Name, err)
			return
		}
		c.say("try: %s: restarted (its own reboot), powered on again", m.Name)
	}
}

// kubeconfig writes the first server's kubeconfig, pointed at the API's
// forward on the host, once k3s has written it.
func (c *Cluster) kubeconfig(ctx context.Context, server Node, sshPort, apiPort int) {
	sess, err := vmtest.Dial(ctx, sshPort, "rancher", c.Key, 15*time.Minute)
	if err != nil {
		return
	}
	defer sess.Close()
	for {
		kc, err := sess.Run("sudo cat /etc/rancher/k3s/k3s.yaml")
		if err == nil && strings.Contains(kc, "server: https://127.0.0.1:6443") {
			kc = strings.Replace(kc, "server: https://127.0.0.1:6443", fmt.Sprintf("server: https://127.0.0.1:%d", apiPort), 1)
			p := filepath.Join(c.Dir, "kubeconfig")
			if os.WriteFile(p, []byte(kc), 0o600) == nil {
				c.say("try: kubectl --kubeconfig %s get nodes    # the cluster's admin credentials (keep them to yourself)", p)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func lastMatch(console, marker string) string {
	i := strings.LastIndex(console, marker)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(console[i+len(marker):], "\n")
	return strings.TrimSpace(line)
}

// forward is a port on the host's loopback that reaches an address on
// the link.
type forward struct {
	Port int
	ln   net.Listener
}

func newForward(l *link, target func() string) (*forward, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forward{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := l.dial(target())
				if err != nil {
					return
				}
				defer out.Close()
				go io.Copy(out, in)
				io.Copy(in, out)
			}()
		}
	}()
	return f, nil
}

func (f *forward) Close() error { return f.ln.Close() }

// Config is one run of `go tool mage try`.
type Config struct {
	Plan   plan.Options
	Runner *run.Runner
	// Host runs QEMU, whatever engine builds.
	Host      *host.Engine
	ConfigDir string
	// Env resolves the configs' ${NAME} references.
	Env nodeconfig.Lookup
	// Trust are the public keys the nodes accept upgrades signed with, as
	// on a card: a rollout can be tried on the cluster first.
	Trust []string
	Dist  string
	Out   io.Writer
}

// Run builds the cluster's image into dist/try (its configs with the
// example's placeholders allowed, try's own SSH key added to every node
// and the k3s arguments emulation needs: nobody flashes these cards) and
// keeps the cluster up until ctx ends.
func Run(ctx context.Context, c Config) error {
	p, err := plan.New(c.Plan)
	if err != nil {
		return err
	}
	lenient := release.Resolve{Examples: true}
	cluster, err := lenient.Validate(c.ConfigDir, io.Discard)
	if err != nil {
		return err
	}
	nodes, skipped := NodesOf(cluster)
	for _, n := range skipped {
		fmt.Fprintln(c.Out, "try: skipping "+n)
	}
	if len(nodes) == 0 {
		return fmt.Errorf("%s has no node files (<MAC>.yaml) to boot", c.ConfigDir)
	}
	key, err := vmtest.NewKey()
	if err != nil {
		return err
	}
	lenient.ExtraKeys = []string{key.PublicKey}
	// What k3s needs under emulation, some ten times slower than a Pi.
	lenient.ExtraK3sArgs = func(role string) []string {
		return vmtest.EmulationHAK3sArgs(p.K3sVersion, role != nodeconfig.RoleAgent)
	}
	dir, err := filepath.Abs(filepath.Join(c.Dist, "try"))
	if err != nil {
		return err
	}
	img := release.Image{Plan: p, Runner: c.Runner, ConfigDir: c.ConfigDir, Env: c.Env, Resolve: lenient, Trust: c.Trust, Out: c.Out}
	if err := img.Build(ctx, dir); err != nil {
		return err
	}
	cl := &Cluster{Nodes: nodes, Image: filepath.Join(dir, p.ImageName()), Dir: dir, Key: key, Out: c.Out,
		Run: func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error) {
			return c.Host.Command(ctx, plan.VMToolchain, binds, argv...)
		}}
	return cl.Up(ctx)
}
