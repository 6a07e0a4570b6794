package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/agent/apply"
)

// Health is what a trial boot must show before it is committed: the
// config applied without a failed step, sshd answering, and, on a node
// with k3s, k3s active and the node Ready.
type Health struct {
	// StatusFile is the apply's result (apply.StatusFile).
	StatusFile string
	// SSH is sshd's address (127.0.0.1:22).
	SSH string
	// K3s says whether the node runs k3s; Node is its node name.
	K3s  bool
	Node string
	// Unconfigured is why the boot found no node config, if it did not: a
	// trial without its config is not healthy, whatever else answers.
	Unconfigured string
	// Run runs a command and returns its standard output.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// The kubelet's own credentials may read its node: they serve servers and
// agents alike, without the admin kubeconfig.
const kubeletKubeconfig = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"

// Check is the health check: nil when healthy, an error saying what is
// not yet, or a Fatal one when waiting cannot help.
func (h Health) Check(ctx context.Context) error {
	if h.Unconfigured != "" {
		return Fatal{fmt.Errorf("the boot is unconfigured: %s", h.Unconfigured)}
	}
	b, err := os.ReadFile(h.StatusFile)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("the config is not applied yet")
	}
	if err != nil {
		return err
	}
	var res apply.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", h.StatusFile, err)
	}
	if failed := res.Failed(); len(failed) > 0 {
		var what []string
		for _, s := range failed {
			what = append(what, s.Name+": "+s.Err)
		}
		return Fatal{fmt.Errorf("applying the config failed (%s)", strings.Join(what, "; "))}
	}
	if err := sshAnswers(ctx, h.SSH); err != nil {
		return err
	}
	if !h.K3s {
		return nil
	}
	out, err := h.Run(ctx, "systemctl", "is-active", "k3s.service")
	if state := strings.TrimSpace(string(out)); state != "active" {
		if state == "" {
			return fmt.Errorf("systemd does not say whether k3s is active: %v", err)
		}
		return fmt.Errorf("k3s is %s, not active", state)
	}
	// The kubectl link, not "k3s kubectl": a k3s built from source (the
	// multicall binary without the release's wrapper) refuses the subcommand
	// and dispatches on its name only.
	out, err = h.Run(ctx, "/usr/local/bin/kubectl", "--kubeconfig", kubeletKubeconfig, "get", "node", h.Node,
		"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return fmt.Errorf("k3s does not say the node %s is Ready yet: %v", h.Node, err)
	}
	if s := strings.TrimSpace(string(out)); s != "True" {
		return fmt.Errorf("the node %s is not Ready (Ready=%q)", h.Node, s)
	}
	return nil
}

// sshAnswers says whether an SSH server answers at addr with its banner.
func sshAnswers(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sshd is not listening on %s", addr)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil || string(buf) != "SSH-" {
		return fmt.Errorf("%s does not answer as an SSH server", addr)
	}
	return nil
}
