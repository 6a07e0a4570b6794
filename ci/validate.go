package ci

import (
	"fmt"
	"io"

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
