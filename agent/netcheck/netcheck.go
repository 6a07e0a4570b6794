// Package netcheck checks a node for the known causes of pods on one node
// failing to reach services and DNS on another (the classic "the first
// Pi works, the next cannot resolve"): VXLAN missing from the kernel,
// bridge netfilter off, iptables rules split between the nft and legacy
// backends, and strict reverse-path filtering.
package netcheck

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Problem is one cause found, with what it breaks and the fix.
type Problem struct {
	Cause, Breaks, Fix string
}

func (p Problem) String() string {
	return p.Cause + ": " + p.Breaks + " (" + p.Fix + ")"
}

// Node is where the checks read: Root is "/" on a node; Kernel the
// running kernel's release; Legacy lists the legacy iptables tables'
// rules (iptables-legacy-save), "" when there are none or no such tool.
type Node struct {
	Root, Kernel string
	Legacy       func() string
}

func (n Node) read(p string) string {
	b, _ := os.ReadFile(filepath.Join(n.Root, p))
	return strings.TrimSpace(string(b))
}

// module says whether the kernel has a module loaded or built in.
func (n Node) module(name string) bool {
	if _, err := os.Stat(filepath.Join(n.Root, "/sys/module", name)); err == nil {
		return true
	}
	f, err := os.Open(filepath.Join(n.Root, "/usr/lib/modules", n.Kernel, "modules.builtin"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSuffix(filepath.Base(sc.Text()), ".ko") == name {
			return true
		}
	}
	return false
}

// moduleAvailable says whether the kernel has a module, loaded or not.
func (n Node) moduleAvailable(name string) bool {
	if n.module(name) {
		return true
	}
	dep, _ := os.ReadFile(filepath.Join(n.Root, "/usr/lib/modules", n.Kernel, "modules.dep"))
	for _, l := range strings.Split(string(dep), "\n") {
		mod, _, _ := strings.Cut(l, ":")
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(mod), ".zst"), ".xz"), ".ko")
		if base == name {
			return true
		}
	}
	return false
}

// Check runs every check; none found is an empty list.
func (n Node) Check() []Problem {
	var out []Problem
	if !n.moduleAvailable("vxlan") {
		out = append(out, Problem{"no VXLAN in the kernel", "flannel's vxlan backend cannot make flannel.1: pods on different nodes cannot reach each other",
			"a kernel with CONFIG_VXLAN: KERNEL=pi"})
	}
	if !n.module("br_netfilter") {
		out = append(out, Problem{"br_netfilter is not loaded", "traffic between pods on one bridge skips iptables: services (and DNS through 10.43.0.10) fail",
			"modprobe br_netfilter (k3s.service does it at start; is k3s running?)"})
	} else if v := n.read("/proc/sys/net/bridge/bridge-nf-call-iptables"); v != "1" {
		out = append(out, Problem{"net.bridge.bridge-nf-call-iptables is " + v, "bridged pod traffic skips iptables: services (and DNS) fail",
			"sysctl -w net.bridge.bridge-nf-call-iptables=1 (90-k3s.conf sets it once br_netfilter is loaded)"})
	}
	for _, p := range []string{"all", "default"} {
		if v := n.read("/proc/sys/net/ipv4/conf/" + p + "/rp_filter"); v == "1" {
			out = append(out, Problem{"strict reverse-path filtering (net.ipv4.conf." + p + ".rp_filter=1)", "replies that flannel routes back another way are dropped",
				"set it to 2 (loose) or 0 in the config's sysctl"})
		}
	}
	if n.Legacy != nil {
		if rules := n.Legacy(); strings.Contains(rules, "KUBE-") || strings.Contains(rules, "FLANNEL") || strings.Contains(rules, "CNI-") {
			out = append(out, Problem{"iptables rules in both backends (legacy and nft)", "kube-proxy's and flannel's rules are split: one backend's NAT never sees the other's traffic",
				"one iptables for everything: remove the legacy rules (iptables-legacy -F; iptables-legacy -t nat -F) and restart k3s"})
		}
	}
	return out
}

// LegacyRules lists the legacy iptables backend's rules, if the node has
// the tool.
func LegacyRules() string {
	out, err := exec.Command("iptables-legacy-save").Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// Summary is one line for the console and `k3os status`.
func Summary(probs []Problem) string {
	if len(probs) == 0 {
		return "network check: ok (vxlan, br_netfilter and bridge-nf-call-iptables, one iptables backend, rp_filter)"
	}
	var s []string
	for _, p := range probs {
		s = append(s, p.String())
	}
	return fmt.Sprintf("network check: %d problem(s) that break pods across nodes: %s", len(probs), strings.Join(s, "; "))
}
