package vmtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// The test container image is a valid image: its config names the layer
// it carries, for the arm64 platform.
func TestAgentImage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "k3os-agent")
	os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755)
	b, err := agentImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Fatalf("layers %d, diff IDs %d; want 1 and 1", len(layers), len(cf.RootFS.DiffIDs))
	}
	if d, _ := layers[0].DiffID(); d != cf.RootFS.DiffIDs[0] {
		t.Errorf("layer diff ID %s, config says %s", d, cf.RootFS.DiffIDs[0])
	}
	if cf.Architecture != "arm64" || cf.Config.Entrypoint[0] != "/k3os-agent" {
		t.Errorf("config = %s %v", cf.Architecture, cf.Config.Entrypoint)
	}
}

func TestWriteCluster(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteCluster(dir, key); err != nil {
		t.Fatal(err)
	}
	if _, r := nodeconfig.LoadCluster(dir); r.HasErrors() {
		t.Fatalf("the test cluster is not valid:\n%v", r)
	}
	b, _ := os.ReadFile(filepath.Join(dir, NodeMAC+".yaml"))
	if !strings.Contains(string(b), key.PublicKey) || !strings.Contains(string(b), StaticIP+"/24") {
		t.Errorf("node config lacks the key or the address:\n%s", b)
	}
}
