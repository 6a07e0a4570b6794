package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// wlNode is a node of the workloads stage: its machine, an SSH session
// and its k3s node name.
type wlNode struct {
	m    *Machine
	sess *Session
	name string
}

// Bounds of the workloads stage under emulation.
const (
	toCoreDNS = 10 * time.Minute
	toPods    = 10 * time.Minute
)

const (
	serviceDNS  = "10.43.0.10"
	kubernetes  = "kubernetes.default.svc.cluster.local"
	kubeSvcIP   = "10.43.0.1"
	webService  = "wl-web"
	webPort     = "8080"
	podManifest = `apiVersion: v1
kind: Pod
metadata:
  name: wl-%[1]s
  labels: {app: wl-%[1]s}
spec:
  nodeName: %[1]s
  tolerations: [{operator: Exists}]
  containers:
    - name: web
      image: %[2]s
      command: ["sh", "-c", "mkdir -p /www && echo wl-%[1]s > /www/index.html && echo wl-%[1]s started && exec httpd -f -v -p ` + webPort + ` -h /www"]
---
`
)

// Workloads runs pods on a Ready cluster (first node the server): CoreDNS
// Running, a busybox pod pinned to each node (tolerating any taint); from
// the pod on a node without CoreDNS (the last node when every node has it)
// the cluster's own name resolves through the DNS service and through the
// CoreDNS pod directly, a Service's name resolves, its ClusterIP and its
// pod's IP answer across the link; logs and exec work on that pod. On a
// failure it keeps each node's network state and names the likely cause.
func (s *Suite) workloads(ctx context.Context, nodes []wlNode) error {
	server := nodes[0]
	// crictl by its own name: a k3s built from source has no working
	// `k3s crictl` subcommand, while the link works with every k3s.
	list, err := server.sess.Run("sudo crictl images")
	if err != nil {
		return fmt.Errorf("listing the images k3s imported (sudo crictl images): %w", err)
	}
	img := ""
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.Contains(f[0], "busybox") {
			img = f[0] + ":" + f[1]
			break
		}
	}
	if img == "" {
		return skipError("the workloads stage needs a busybox image among the card's images (K3S_IMAGES or CONFIG_DIR/images; docs/k3s.md)")
	}
	err = s.runWorkloads(ctx, nodes, img)
	if err != nil {
		s.keepNetworkState(nodes, err)
	}
	return err
}

func (s *Suite) runWorkloads(ctx context.Context, nodes []wlNode, img string) error {
	server := nodes[0]
	kubectl := func(args string) (string, error) { return server.sess.Run("sudo kubectl " + args) }
	var dnsNode, dnsIP string
	if err := poll(ctx, toCoreDNS, func() (bool, string) {
		out, _ := kubectl(`-n kube-system get pods -l k8s-app=kube-dns -o jsonpath='{range .items[*]}{.status.phase} {.spec.nodeName} {.status.podIP}{"\n"}{end}'`)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "Running" {
				dnsNode, dnsIP = f[1], f[2]
				return true, ""
			}
		}
		return false, "CoreDNS: " + out
	}); err != nil {
		return err
	}
	server.m.Mark("CoreDNS Running")
	var manifest strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&manifest, podManifest, n.name, img)
	}
	fmt.Fprintf(&manifest, "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  selector: {app: wl-%s}\n  ports: [{port: %s}]\n", webService, server.name, webPort)
	if _, err := server.sess.RunInput("sudo kubectl apply -f -", strings.NewReader(manifest.String())); err != nil {
		return err
	}
	podIPs := map[string]string{}
	first := false
	if err := poll(ctx, toPods, func() (bool, string) {
		out, _ := kubectl(`get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.status.podIP}{"\n"}{end}'`)
		running := 0
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[1] == "Running" {
				podIPs[strings.TrimPrefix(f[0], "wl-")] = f[2]
				running++
			}
		}
		if running > 0 && !first {
			first = true
			d := server.m.Mark("first pod Running")
			s.logf("first pod Running %.0fs after the server's power-on", d.Seconds())
		}
		return running == len(nodes), "pods: " + out
	}); err != nil {
		return err
	}
	// The pod that must cross the link: on a node without CoreDNS.
	client := nodes[len(nodes)-1]
	for _, n := range nodes {
		if n.name != dnsNode {
			client = n
		}
	}
	svcIP, err := kubectl("get service " + webService + " -o jsonpath='{.spec.clusterIP}'")
	if err != nil {
		return err
	}
	exec := "exec wl-" + client.name + " -- "
	for _, c := range []struct{ what, cmd, want string }{
		{"the cluster's name through the DNS service", exec + "nslookup " + kubernetes + " " + serviceDNS, kubeSvcIP},
		{"the cluster's name through the CoreDNS pod " + dnsIP + " (on " + dnsNode + ")", exec + "nslookup " + kubernetes + " " + dnsIP, kubeSvcIP},
		{"the Service's name", exec + "nslookup " + webService + ".default.svc.cluster.local " + serviceDNS, svcIP},
		{"the Service's ClusterIP", exec + "wget -qO- -T 10 http://" + svcIP + ":" + webPort + "/", "wl-" + server.name},
		{"the Service's pod IP", exec + "wget -qO- -T 10 http://" + podIPs[server.name] + ":" + webPort + "/", "wl-" + server.name},
		{"kubectl logs", "logs wl-" + client.name, "wl-" + client.name + " started"},
	} {
		var out string
		err := poll(ctx, 2*time.Minute, func() (bool, string) {
			var err error
			out, err = kubectl(c.cmd)
			return err == nil && strings.Contains(out, c.want), out
		})
		if err != nil {
			return fmt.Errorf("from the pod on %s: %s: `kubectl %s` gave %q, want %q in it", client.name, c.what, c.cmd, out, c.want)
		}
		s.logf("workloads: from the pod on %s: %s ok", client.name, c.what)
	}
	_, err = kubectl("delete pods,services -l 'app in (" + appLabels(nodes) + ")' --wait=false")
	kubectl("delete service " + webService + " --wait=false")
	return err
}

func appLabels(nodes []wlNode) string {
	var l []string
	for _, n := range nodes {
		l = append(l, "wl-"+n.name)
	}
	return strings.Join(l, ",")
}

// poll asks f every few seconds until it says done or the time is up.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, last := f()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s (last: %s)", timeout, last)
		}
		if err := sleep(ctx, 3*time.Second); err != nil {
			return err
		}
	}
}

// keepNetworkState keeps what separates the known causes of cross-node
// failures, per node, and names the one the evidence points to.
func (s *Suite) keepNetworkState(nodes []wlNode, cause error) {
	var notes []string
	for _, n := range nodes {
		keepOutputs(n.m, n.sess, map[string]string{
			"iptables-save.txt":   "sudo iptables-save; echo '# legacy:'; sudo iptables-legacy-save",
			"ip-route.txt":        "ip route; ip -6 route",
			"ip-link.txt":         "ip -d link",
			"conntrack.txt":       "sudo conntrack -L 2>&1 | head -200",
			"pods.txt":            "sudo kubectl get pods -A -o wide; sudo kubectl describe pods -l 'app in (" + appLabels(nodes) + ")'",
			"coredns-logs.txt":    "sudo kubectl -n kube-system logs -l k8s-app=kube-dns --tail=200",
			"network-check.txt":   "k3os status",
			"flannel-annotations": "sudo kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip}{\"\\n\"}{end}'",
		})
		b, _ := os.ReadFile(filepath.Join(n.m.Dir, "ip-link.txt"))
		if !strings.Contains(string(b), "vxlan id") {
			notes = append(notes, n.name+": no vxlan flannel.1 (a kernel without VXLAN, or flannel on the wrong interface)")
		}
		if st, _ := os.ReadFile(filepath.Join(n.m.Dir, "network-check.txt")); strings.Contains(string(st), "problem(s)") {
			notes = append(notes, n.name+": "+lastLine(string(st)))
		}
		if ipt, _ := os.ReadFile(filepath.Join(n.m.Dir, "iptables-save.txt")); strings.Contains(string(ipt[strings.Index(string(ipt), "# legacy:")+1:]), "KUBE-") {
			notes = append(notes, n.name+": kube-proxy rules in the legacy iptables backend (two backends mixed)")
		}
	}
	if strings.Contains(cause.Error(), "DNS service") && !strings.Contains(cause.Error(), "CoreDNS pod") {
		notes = append(notes, "only the service path failed: bridge netfilter (br_netfilter, bridge-nf-call-iptables) or VXLAN checksums")
	}
	if len(notes) == 0 {
		notes = append(notes, "everything failing points at vxlan, the flannel interface or a firewall (UDP 8472, rp_filter, MTU)")
	}
	s.logf("workloads failed; network state of each node kept beside its console; the evidence points at: %s", strings.Join(notes, "; "))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}
