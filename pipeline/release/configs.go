package release

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// NoCluster is the CONFIG_DIR value of an image that carries no node
// configs at all: every node boots unconfigured and says so (releases).
const NoCluster = "none"

// ValidateConfig loads a cluster's config directory and writes every issue
// as file:line:col, then one line per node. It fails on any error.
func ValidateConfig(dir string, w io.Writer) (*nodeconfig.Cluster, error) {
	return validateConfig(dir, w, Resolve{})
}

// Resolve are the options of a resolution for a cluster that runs in
// QEMU only (go tool mage try).
type Resolve struct {
	// Examples lets the example's placeholders (tokens, keys) through as
	// warnings: nobody flashes these cards.
	Examples bool
	// ExtraKeys are added to every node's ssh_authorized_keys.
	ExtraKeys []string
	// ExtraK3sArgs, when set, gives more k3s_args for a node of a role.
	ExtraK3sArgs func(role string) []string
}

// lenient turns the example's placeholder errors into warnings.
func (o Resolve) lenient(r nodeconfig.Report) nodeconfig.Report {
	if !o.Examples {
		return r
	}
	for i := range r {
		if r[i].Severity == nodeconfig.Error && strings.Contains(r[i].Msg, "the example's placeholder") {
			r[i].Severity = nodeconfig.Warning
			r[i].Hint = "allowed in QEMU only: " + r[i].Hint
		}
	}
	return r
}

// Validate is ValidateConfig with the options.
func (o Resolve) Validate(dir string, w io.Writer) (*nodeconfig.Cluster, error) {
	return validateConfig(dir, w, o)
}

func validateConfig(dir string, w io.Writer, o Resolve) (*nodeconfig.Cluster, error) {
	if dir == NoCluster {
		fmt.Fprintln(w, "CONFIG_DIR=none: no cluster; every node boots unconfigured")
		return &nodeconfig.Cluster{Dir: dir}, nil
	}
	c, r := nodeconfig.LoadCluster(dir)
	if err := report(dir, o.lenient(r), w); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		cfg := n.Doc.Config
		host := cfg.Hostname
		if host == "" {
			host = "(from MAC)"
		}
		fmt.Fprintf(w, "%-17s  %-20s  %s\n", n.Name(), host, cfg.Role())
	}
	return c, nil
}

// report writes a report's issues and fails on any error.
func report(dir string, r nodeconfig.Report, w io.Writer) error {
	for _, is := range r.Sorted() {
		fmt.Fprintln(w, is)
	}
	if err := r.Err(); err != nil {
		errs := 0
		for _, is := range r {
			if is.Severity == nodeconfig.Error {
				errs++
			}
		}
		return fmt.Errorf("%s: %d error(s) in the cluster config; fix them and run go tool mage validate again", dir, errs)
	}
	return nil
}

// ResolveConfigs validates the cluster directory, resolves its secret
// references (${NAME} through env, file: relative to the directory),
// validates the resolved values again, and writes each node's merged
// config in canonical form (<mac>.yaml, default.yaml) into out, which it
// empties first; files and directory are 0600/0700. An agent given an
// agent_token gets no server token: the cluster.yaml that all nodes share
// may hold both.
func ResolveConfigs(dir, out string, env nodeconfig.Lookup, w io.Writer) (*nodeconfig.Cluster, error) {
	return Resolve{}.configs(dir, out, env, w)
}

func (o Resolve) configs(dir, out string, env nodeconfig.Lookup, w io.Writer) (*nodeconfig.Cluster, error) {
	c, err := validateConfig(dir, w, o)
	if err != nil {
		return nil, err
	}
	var r nodeconfig.Report
	for _, n := range c.Nodes {
		r = append(r, nodeconfig.Secrets{Dir: dir, Env: env}.Resolve(n.Doc)...)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		k := &n.Doc.Config.K3OS
		if n.Doc.Config.Role() == nodeconfig.RoleAgent && k.AgentToken != "" {
			k.Token = ""
		}
		r = append(r, n.Doc.ValidateResolved()...)
		n.Doc.Config.SSHAuthorizedKeys = append(n.Doc.Config.SSHAuthorizedKeys, o.ExtraKeys...)
		if o.ExtraK3sArgs != nil {
			k.K3sArgs = append(k.K3sArgs, o.ExtraK3sArgs(n.Doc.Config.Role())...)
		}
	}
	if err := report(dir, o.lenient(r).Errors(), w); err != nil {
		return nil, fmt.Errorf("%w (in the values the ${NAME} and file: references stand for)", err)
	}
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		b, err := nodeconfig.Marshal(&n.Doc.Config)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, n.Name()+".yaml"), b, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}
