package netcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	root := t.TempDir()
	put := func(p, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o644)
	}
	n := Node{Root: root, Kernel: "6.12.117", Legacy: func() string { return "" }}
	causes := func() string {
		var s []string
		for _, p := range n.Check() {
			s = append(s, p.Cause)
		}
		return strings.Join(s, "|")
	}
	if got := causes(); !strings.Contains(got, "no VXLAN") || !strings.Contains(got, "br_netfilter is not loaded") {
		t.Errorf("a bare node: %q", got)
	}
	// A healthy node: vxlan built in, br_netfilter loaded, the sysctl on.
	put("/usr/lib/modules/6.12.117/modules.builtin", "kernel/drivers/net/vxlan/vxlan.ko\n")
	os.MkdirAll(filepath.Join(root, "/sys/module/br_netfilter"), 0o755)
	put("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
	put("/proc/sys/net/ipv4/conf/all/rp_filter", "2\n")
	if got := n.Check(); len(got) != 0 {
		t.Errorf("a healthy node: %v", got)
	}
	if !strings.HasPrefix(Summary(nil), "network check: ok") {
		t.Error(Summary(nil))
	}
	put("/proc/sys/net/bridge/bridge-nf-call-iptables", "0\n")
	put("/proc/sys/net/ipv4/conf/all/rp_filter", "1\n")
	n.Legacy = func() string { return "*nat\n-A KUBE-SERVICES -j KUBE-NODEPORTS\n" }
	got := causes()
	for _, want := range []string{"bridge-nf-call-iptables is 0", "rp_filter=1", "both backends"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	// vxlan as a module, not loaded, is there.
	os.Remove(filepath.Join(root, "/usr/lib/modules/6.12.117/modules.builtin"))
	put("/usr/lib/modules/6.12.117/modules.dep", "kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\n")
	if strings.Contains(causes(), "VXLAN") {
		t.Error("a vxlan module was not found")
	}
}
