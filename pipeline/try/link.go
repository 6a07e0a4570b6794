package try

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// link is the cluster's switch: a bridge in a network namespace of its
// own, so that nothing of the host's network changes (the cluster's
// addresses may well be those of the host's own LAN). Each machine gets a
// tap on it; the host is on it too (for SSH and the API) and serves DHCP
// to the nodes that ask.
type link struct {
	name   string
	ns     netns.NsHandle
	hostIP net.IP
	subnet *net.IPNet
	taps   []string

	mu     sync.Mutex
	leases map[string]net.IP // by MAC
	taken  map[string]bool   // static addresses, the host's
	next   net.IP
	router net.IP
	dhcp   *server4.Server
}

const bridgeName = "k3os-try"

// onThread runs f on a thread of its own, which goes back to the
// process's namespace afterwards (or ends with f's goroutine when it
// cannot: Go must not hand a thread in another namespace to others).
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		errc <- f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

// inNS runs f on a thread in the link's namespace.
func (l *link) inNS(f func() error) error {
	return onThread(func() error {
		if err := netns.Set(l.ns); err != nil {
			return err
		}
		return f()
	})
}

// newLink makes the namespace, the bridge with the host's address, and a
// tap per machine.
func newLink(name string, hostIP net.IP, subnet *net.IPNet, router net.IP, taken []net.IP, machines int) (*link, error) {
	l := &link{name: name, hostIP: hostIP, subnet: subnet, router: router, leases: map[string]net.IP{}, taken: map[string]bool{hostIP.String(): true}}
	for _, ip := range taken {
		l.taken[ip.String()] = true
	}
	err := onThread(func() error {
		// One left by a run that was killed goes first. NewNamed moves the
		// thread into the new namespace.
		netns.DeleteNamed(name)
		ns, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("making the network namespace %s: %w", name, err)
		}
		l.ns = ns
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = l.inNS(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		ones, _ := subnet.Mask.Size()
		addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", hostIP, ones))
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(br, addr); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return err
		}
		for i := 0; i < machines; i++ {
			tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("tap%d", i), MasterIndex: br.Attrs().Index},
				Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE, NonPersist: false}
			if err := netlink.LinkAdd(tap); err != nil {
				return fmt.Errorf("tap%d: %w", i, err)
			}
			if err := netlink.LinkSetUp(tap); err != nil {
				return err
			}
			l.taps = append(l.taps, tap.Name)
		}
		return nil
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// spawn starts a command in the link's namespace: the child is forked
// from a thread there.
func (l *link) spawn(cmd *exec.Cmd) error {
	return l.inNS(cmd.Start)
}

// dial connects to addr on the link.
func (l *link) dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := l.inNS(func() error {
		var err error
		c, err = net.Dial("tcp", addr)
		return err
	})
	return c, err
}

// serveDHCP answers the nodes that ask for an address: a fixed one per
// MAC from the top of the subnet, with the config's gateway as router.
func (l *link) serveDHCP() error {
	err := l.inNS(func() error {
		s, err := server4.NewServer(bridgeName, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, l.answer)
		l.dhcp = s
		return err
	})
	if err != nil {
		return fmt.Errorf("the link's DHCP server: %w", err)
	}
	go l.dhcp.Serve()
	return nil
}

// Lease is the address a MAC got, nil before it asked.
func (l *link) Lease(mac string) net.IP {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leases[mac]
}

func (l *link) lease(mac string) net.IP {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip, ok := l.leases[mac]; ok {
		return ip
	}
	if l.next == nil {
		l.next = lastHost(l.subnet)
	}
	ip := l.next
	for l.taken[ip.String()] {
		ip = prevIP(ip)
	}
	l.next = prevIP(ip)
	l.leases[mac] = ip
	return ip
}

func (l *link) answer(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
	default:
		return
	}
	ip := l.lease(m.ClientHWAddr.String())
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(ip), dhcpv4.WithServerIP(l.hostIP),
		dhcpv4.WithNetmask(l.subnet.Mask), dhcpv4.WithLeaseTime(86400),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.hostIP))}
	if l.router != nil {
		mods = append(mods, dhcpv4.WithRouter(l.router))
	}
	reply, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	// The client has no address yet: the reply is broadcast on the link.
	conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}

// Close removes the namespace, and with it the bridge and the taps.
func (l *link) Close() error {
	if l.dhcp != nil {
		l.dhcp.Close()
	}
	if l.ns.IsOpen() {
		l.ns.Close()
	}
	return netns.DeleteNamed(l.name)
}

func lastHost(n *net.IPNet) net.IP {
	ip := n.IP.To4()
	out := make(net.IP, 4)
	for i := range out {
		out[i] = ip[i] | ^n.Mask[i]
	}
	return prevIP(out) // not the broadcast address
}

func prevIP(ip net.IP) net.IP {
	out := make(net.IP, 4)
	copy(out, ip.To4())
	for i := 3; i >= 0; i-- {
		if out[i] > 0 {
			out[i]--
			break
		}
		out[i] = 255
	}
	return out
}
