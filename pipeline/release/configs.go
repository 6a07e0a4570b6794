package release

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// ValidateConfig loads a cluster's config directory and writes every issue
// as file:line:col, then one line per node. It fails on any error.
func ValidateConfig(dir string, w io.Writer) (*nodeconfig.Cluster, error) {
	c, r := nodeconfig.LoadCluster(dir)
	for _, is := range r {
		fmt.Fprintln(w, is)
	}
	if err := r.Err(); err != nil {
		errs := 0
		for _, is := range r {
			if is.Severity == nodeconfig.Error {
				errs++
			}
		}
		return nil, fmt.Errorf("%s: %d error(s) in the cluster config; fix them and run go tool mage validate again", dir, errs)
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

// ResolveConfigs validates the cluster directory, resolves its secret
// references (${NAME} through env, file: relative to the directory) and
// writes each node's merged config in canonical form (<mac>.yaml,
// default.yaml) into out, which it empties first.
func ResolveConfigs(dir, out string, env nodeconfig.Lookup, w io.Writer) (*nodeconfig.Cluster, error) {
	c, err := ValidateConfig(dir, w)
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
