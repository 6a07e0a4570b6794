package release

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// The example cluster (config/) is valid but for its placeholders, which
// validate refuses so that no card is built with them: the examples' own
// test, the one place they pass.
func TestExampleCluster(t *testing.T) {
	_, r := nodeconfig.LoadCluster("../../config")
	errs := r.Errors()
	if len(errs) != 3 {
		t.Fatalf("want the three placeholders refused (keys, token, agent token), got:\n%v", r)
	}
	for _, is := range errs {
		if !strings.Contains(is.Msg, "the example's placeholder") {
			t.Errorf("an error that is not a placeholder: %v", is)
		}
	}
	// With the placeholders replaced, the cluster is valid.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../config")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	s := strings.NewReplacer(nodeconfig.ExampleKeys, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGyF+f1rX0pTNg1f4rUeB0OeiJ8qzC1Y1hA9xFTSwXxR me",
		"change-me-server-token", "${SERVER_TOKEN}", "change-me-agent-token", "${AGENT_TOKEN}").Replace(string(b))
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(s), 0o644)
	if _, err := ValidateConfig(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		return map[string]string{"SERVER_TOKEN": "s3rver-secret", "AGENT_TOKEN": "ag3nt-secret"}[k], true
	}
	out := filepath.Join(t.TempDir(), "resolved")
	c, err := ResolveConfigs(dir, out, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Agents (k3s-3 and default.yaml) get the agent token, never the server
	// token; servers get both.
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(out, n.Name()+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		server := strings.Contains(string(b), "s3rver-secret")
		if agent := n.Doc.Config.Role() == nodeconfig.RoleAgent; agent == server || !strings.Contains(string(b), "ag3nt-secret") {
			t.Errorf("%s (%s): server token %v:\n%s", n.Name(), n.Doc.Config.Role(), server, b)
		}
		if fi, _ := os.Stat(filepath.Join(out, n.Name()+".yaml")); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", n.Name(), fi.Mode())
		}
	}
}

// CONFIG_DIR=none: a cluster of no nodes, for release images.
func TestNoCluster(t *testing.T) {
	c, err := ValidateConfig(NoCluster, io.Discard)
	if err != nil || len(c.Nodes) != 0 {
		t.Errorf("ValidateConfig(none) = %v, %v", c, err)
	}
}
