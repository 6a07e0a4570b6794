package try

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestMemory(t *testing.T) {
	nodes := []Node{{Role: nodeconfig.RoleClusterInit}, {Role: nodeconfig.RoleServer}, {Role: nodeconfig.RoleAgent}}
	if m, err := Memory(nodes, 24000); err != nil || m[0] != serverMiB || m[2] != agentMiB {
		t.Errorf("a roomy host: %v %v", m, err)
	}
	m, err := Memory(nodes, 5000) // 2952 MiB for 5120 wanted
	if err != nil || m[0] >= serverMiB || m[0] < serverMinMiB || m[2] < agentMinMiB {
		t.Errorf("a tight host: %v %v", m, err)
	}
	if _, err := Memory(nodes, 3000); err == nil || !strings.Contains(err.Error(), "try fewer nodes") {
		t.Errorf("a host too small: %v", err)
	}
}

func TestPlanTheLink(t *testing.T) {
	c := &Cluster{Nodes: []Node{
		{Hostname: "k3s-1", Static: "192.168.1.101/24", Gateway: "192.168.1.1"},
		{Hostname: "k3s-2", Static: "192.168.1.102/24"},
		{Hostname: "k3s-3"},
	}}
	subnet, host, router, taken, err := c.plan()
	if err != nil || subnet.String() != "192.168.1.0/24" || host.String() != "192.168.1.1" || router.String() != "192.168.1.1" || len(taken) != 2 {
		t.Fatalf("%v %v %v %v %v", subnet, host, router, taken, err)
	}
	l := &link{subnet: subnet, hostIP: host, leases: map[string]net.IP{}, taken: map[string]bool{"192.168.1.254": true}}
	if ip := l.lease("52:54:00:00:00:03"); ip.String() != "192.168.1.253" {
		t.Errorf("lease %v", ip)
	}
	c.Nodes[1].Static = "10.0.0.2/24"
	if _, _, _, _, err := c.plan(); err == nil {
		t.Error("two subnets passed")
	}
}

// The link is a bridge in a namespace of its own, with a tap per machine;
// the host reaches addresses on it; closing it leaves nothing behind.
func TestLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CI runs as root)")
	}
	_, subnet, _ := net.ParseCIDR("192.168.99.0/24")
	host := net.ParseIP("192.168.99.1")
	l, err := newLink("k3os-try-test", host, subnet, nil, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	var ln net.Listener
	err = l.inNS(func() error {
		br, err := netlink.LinkByName(bridgeName)
		if err != nil {
			return err
		}
		as, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		for _, a := range as {
			addrs = append(addrs, a.IPNet.String())
		}
		for _, tap := range l.taps {
			tl, err := netlink.LinkByName(tap)
			if err != nil {
				return err
			}
			if tl.Attrs().MasterIndex != br.Attrs().Index {
				t.Errorf("%s is not on the bridge", tap)
			}
		}
		ln, err = net.Listen("tcp", "192.168.99.1:0")
		return err
	})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0] != "192.168.99.1/24" {
		t.Errorf("bridge addresses %v", addrs)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("on the link\n"))
			c.Close()
		}
	}()
	c, err := l.dial(ln.Addr().String())
	if err != nil {
		t.Error(err)
	} else {
		b := make([]byte, 12)
		n, _ := c.Read(b)
		if string(b[:n]) != "on the link\n" {
			t.Errorf("read %q", b[:n])
		}
		c.Close()
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the host's own namespace reaches the link: it should not")
	}
	ln.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.GetFromName("k3os-try-test"); err == nil {
		t.Error("the namespace outlived Close")
	}
}
