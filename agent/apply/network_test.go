package apply

import (
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestNetwork(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Network: map[string]nodeconfig.Interface{
		"eth0":  {Address: "192.168.1.10/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.1", "1.1.1.1"}},
		"wlan0": {DHCP: true},
	}}})
	writeTestFile(t, n.Root, networkDir+"/10-k3os-eth1.network", "from an earlier config")
	writeTestFile(t, n.Root, networkDir+"/20-mine.network", "the node's own")
	n.step(t, networkStep)

	tests := []struct{ path, want string }{
		{networkDir + "/10-k3os-eth0.network", header + "[Match]\nName=eth0\n\n[Network]\nAddress=192.168.1.10/24\nGateway=192.168.1.1\nDNS=192.168.1.1\nDNS=1.1.1.1\n"},
		{networkDir + "/10-k3os-wlan0.network", header + "[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n"},
		{dhcpNetwork, dhcpNetworkConfig},
		{networkDir + "/10-k3os-eth1.network", ""},
		{networkDir + "/20-mine.network", "the node's own"},
	}
	for _, tt := range tests {
		if got := n.read(t, tt.path); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.path, got, tt.want)
		}
	}

	n.Config = &nodeconfig.Config{}
	n.step(t, networkStep)
	for _, p := range []string{"/10-k3os-eth0.network", "/10-k3os-wlan0.network"} {
		if n.exists(networkDir + p) {
			t.Errorf("%s remains after the config dropped the interface", p)
		}
	}
	if !n.exists(dhcpNetwork) {
		t.Errorf("%s is gone, want it always", dhcpNetwork)
	}
}

func TestNetworkBadName(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Network: map[string]nodeconfig.Interface{
		"../x": {DHCP: true},
		"eth0": {DHCP: true},
	}}})
	if err := networkStep(t.Context(), n.Context); err == nil {
		t.Error("networkStep = nil error, want one for \"../x\"")
	}
	if !n.exists(networkDir + "/10-k3os-eth0.network") {
		t.Error("eth0 was not written")
	}
}
