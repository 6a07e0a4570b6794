package apply

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// k3s's images directory links the running version's tarballs and the
// cluster's; links of another version go, a user's own file stays.
func TestImagesStep(t *testing.T) {
	root := t.TempDir()
	c := &Context{Root: root, Version: "2.0.0", K3sPresent: true}
	put := func(p string) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte("x"), 0o644)
	}
	put(filepath.Join(layout.StateMount, layout.SystemDir, "2.0.0", layout.VersionImages, "k3s-airgap-images-arm64.tar.zst"))
	put(filepath.Join(layout.StateMount, layout.ClusterImagesDir, "app.tar"))
	put(filepath.Join(k3sImagesDir, "mine.tar"))
	dir := filepath.Join(root, k3sImagesDir)
	os.Symlink("/k3os/state/k3os/system/1.0.0/images/old.tar.zst", filepath.Join(dir, "k3os-system-old.tar.zst"))
	for i := 0; i < 2; i++ { // the second run changes nothing
		if err := imagesStep(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	got := map[string]string{}
	for _, e := range entries {
		got[e.Name()], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	want := map[string]string{
		"k3os-system-k3s-airgap-images-arm64.tar.zst": "/k3os/state/k3os/system/2.0.0/images/k3s-airgap-images-arm64.tar.zst",
		"k3os-cluster-app.tar":                        "/k3os/state/k3os/images/app.tar",
		"mine.tar":                                    "",
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s -> %q, want %q", n, got[n], w)
		}
	}
}
