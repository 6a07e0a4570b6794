package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// The contract with k3s.service, which the root filesystem ships:
//
//	EnvironmentFile=/etc/default/k3s
//	EnvironmentFile=/etc/rancher/k3s/k3s.env
//	ExecStart=/usr/local/bin/k3s $K3S_MODE $K3S_ARGS
//
// k3s itself reads /etc/rancher/k3s/config.yaml.
const (
	k3sUnit           = "k3s.service"
	k3sConfigFile     = "/etc/rancher/k3s/config.yaml"
	k3sTokenFile      = "/etc/rancher/k3s/token"
	k3sAgentTokenFile = "/etc/rancher/k3s/agent-token"
	k3sEnvFile        = "/etc/rancher/k3s/k3s.env"
	k3sDefaults       = "/etc/default/k3s"
)

// k3sConfig is the part of k3s's config.yaml the agent writes.
type k3sConfig struct {
	ClusterInit         bool     `yaml:"cluster-init,omitempty"`
	Server              string   `yaml:"server,omitempty"`
	TokenFile           string   `yaml:"token-file,omitempty"`
	AgentTokenFile      string   `yaml:"agent-token-file,omitempty"`
	DatastoreEndpoint   string   `yaml:"datastore-endpoint,omitempty"`
	WriteKubeconfigMode string   `yaml:"write-kubeconfig-mode,omitempty"`
	NodeLabel           []string `yaml:"node-label,omitempty"`
	NodeTaint           []string `yaml:"node-taint,omitempty"`
}

// k3sStep writes k3s's config, token and environment, and enables k3s when
// the image has it.
func k3sStep(ctx context.Context, c *Context) error {
	cfg := c.cfg()
	k := cfg.K3OS
	role := cfg.Role()
	kc := k3sConfig{NodeLabel: nodeLabels(k.Labels, c.Version), NodeTaint: k.Taints}
	// The node's own token: an agent presents the agent token when it has
	// one (its card then holds no server token); a server holds the server
	// token and, with agent_token, the agent token it accepts.
	token, agentToken := k.Token, k.AgentToken
	if role == nodeconfig.RoleAgent {
		if agentToken != "" {
			token = agentToken
		}
		agentToken = ""
	} else {
		// The admin kubeconfig is the cluster's keys: root's alone (k3OS
		// made it 0644); rancher reads it through sudo.
		kc.WriteKubeconfigMode = "0600"
		kc.DatastoreEndpoint = k.DatastoreEndpoint
	}
	if role == nodeconfig.RoleClusterInit {
		kc.ClusterInit = true
	} else {
		kc.Server = k.ServerURL
	}
	var errs []error
	for _, f := range []struct {
		value, file string
		key         *string
	}{{token, k3sTokenFile, &kc.TokenFile}, {agentToken, k3sAgentTokenFile, &kc.AgentTokenFile}} {
		if f.value == "" {
			errs = append(errs, c.removeFile(f.file))
			continue
		}
		*f.key = f.file
		errs = append(errs, c.writeFile(f.file, []byte(f.value+"\n"), 0o600, nil))
	}
	var y bytes.Buffer
	y.WriteString(header)
	enc := yaml.NewEncoder(&y)
	enc.SetIndent(2)
	if err := errors.Join(enc.Encode(kc), enc.Close()); err != nil {
		return err
	}
	// 0600: the datastore endpoint may hold a password.
	errs = append(errs, c.writeFile(k3sConfigFile, y.Bytes(), 0o600, nil))

	defaults, err := k3sDefaultsFile(role, k.K3sArgs)
	errs = append(errs, err)
	if defaults != nil {
		// 0600: k3s's arguments may say more than they should.
		errs = append(errs, c.writeFile(k3sDefaults, defaults, 0o600, nil))
	}

	env, err := envLines(k.Environment)
	errs = append(errs, err, c.writeFile(k3sEnvFile, []byte(header+strings.Join(append(env, ""), "\n")), 0o600, nil))

	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !c.K3sPresent {
		c.log().Warn("k3s is not in this image (built with K3S=none): k3s config written, service not started")
		return nil
	}
	return enableNow(ctx, c, k3sUnit)
}

// k3sDefaultsFile is /etc/default/k3s: the k3s subcommand and the extra
// arguments, without a leading "server" or "agent" (the role says it).
// Arguments that cannot be passed are left out and reported; the content
// is nil when the arguments cannot be quoted at all.
func k3sDefaultsFile(role string, args []string) ([]byte, error) {
	mode := "server"
	if role == nodeconfig.RoleAgent {
		mode = "agent"
	}
	first := 0 // the index in k3s_args of args[0], for messages
	if len(args) > 0 && (args[0] == "server" || args[0] == "agent") {
		args, first = args[1:], 1
	}
	var keep []string
	var errs []error
	for i, a := range args {
		// systemd splits $K3S_ARGS at whitespace and nothing else. The
		// item is not printed: it may hold a secret.
		if a == "" || strings.ContainsAny(a, " \t\n\r") {
			errs = append(errs, fmt.Errorf("k3s_args item %d: empty or holding whitespace, which cannot be passed to k3s", first+i))
			continue
		}
		keep = append(keep, a)
	}
	q, err := quoteValue(strings.Join(keep, " "))
	if err != nil {
		return nil, err
	}
	return []byte(header + "K3S_MODE=" + mode + "\nK3S_ARGS=" + q + "\n"), errors.Join(errs...)
}

var notLabelChar = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// nodeLabels are the node's labels as k=v, sorted: the config's and
// k3OS's own, which the config may override.
func nodeLabels(labels map[string]string, version string) []string {
	all := map[string]string{"k3os.io/mode": "local"}
	// A label value is at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends.
	v := notLabelChar.ReplaceAllString(version, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	if v = strings.Trim(v, "_.-"); v != "" {
		all["k3os.io/version"] = v
	}
	for k, v := range labels {
		all[k] = v
	}
	out := make([]string, 0, len(all))
	for k, v := range all {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}
