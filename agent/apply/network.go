package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

const (
	networkDir = "/etc/systemd/network"
	// ifacePrefix starts the files of the configured interfaces; they sort
	// before dhcpNetwork, and networkd uses the first file that matches.
	ifacePrefix = "10-k3os-"
	dhcpNetwork = networkDir + "/90-k3os-dhcp.network"
)

// dhcpNetworkConfig puts DHCP on every ethernet and Wi-Fi interface the
// config does not name. It matches names too: k3s's veth pairs are of type
// ether as well, and must be left to the CNI.
const dhcpNetworkConfig = header + `[Match]
Name=en* eth* wl* wlan*
Type=ether wlan

[Network]
DHCP=yes
`

// networkStep writes a systemd-networkd file for each interface of
// k3os.network and the DHCP catch-all, and removes the files of
// interfaces that earlier configs had.
func networkStep(ctx context.Context, c *Context) error {
	ifaces := c.cfg().K3OS.Network
	names := slices.Sorted(maps.Keys(ifaces))
	var errs []error
	keep := map[string]bool{}
	for _, n := range names {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/ \t\n") {
			errs = append(errs, fmt.Errorf("network: %q is not an interface name", n))
			continue
		}
		p := networkDir + "/" + ifacePrefix + n + ".network"
		keep[path.Base(p)] = true
		errs = append(errs, c.writeFile(p, networkFile(n, ifaces[n]), 0o644, nil))
	}
	old, err := filepath.Glob(c.path(networkDir + "/" + ifacePrefix + "*.network"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if !keep[filepath.Base(f)] {
			errs = append(errs, c.removeFile(networkDir+"/"+filepath.Base(f)))
		}
	}
	errs = append(errs, c.writeFile(dhcpNetwork, []byte(dhcpNetworkConfig), 0o644, nil))
	return errors.Join(errs...)
}

func networkFile(name string, ifc nodeconfig.Interface) []byte {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("[Match]\nName=" + name + "\n\n[Network]\n")
	if ifc.Address == "" {
		b.WriteString("DHCP=yes\n")
	} else {
		b.WriteString("Address=" + ifc.Address + "\n")
		if ifc.Gateway != "" {
			b.WriteString("Gateway=" + ifc.Gateway + "\n")
		}
	}
	for _, d := range ifc.DNS {
		b.WriteString("DNS=" + d + "\n")
	}
	return []byte(b.String())
}
