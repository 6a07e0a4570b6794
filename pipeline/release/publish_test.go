package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("interrupted")
	}
	f.n -= len(p)
	return len(p), nil
}

// An interrupted write leaves the previous file whole and no partial file.
func TestWriteAtomicInterrupted(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "a.img")
	os.WriteFile(dst, []byte("previous"), 0o644)
	if err := atomicfile.Write(dst, 0o644, &failingReader{n: 1 << 20}); err == nil {
		t.Fatal("WriteAtomic succeeded on a failing reader")
	}
	if b, _ := os.ReadFile(dst); string(b) != "previous" {
		t.Errorf("dst = %q, want the previous content", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestPublish(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "k3os-rpi4-arm64-1.img")
	os.WriteFile(img, []byte(strings.Repeat("\x00", 1<<20)+"k3os"), 0o644)
	dist := filepath.Join(dir, "dist")
	m := Manifest{Image: filepath.Base(img), Version: "1", K3s: "none"}
	if err := Publish(context.Background(), dist, img, m, []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "sha256sums"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"k3os-rpi4-arm64-1.img", "k3os-rpi4-arm64-1.img.zst", "k3os-rpi4-arm64-1.manifest.json", "k3os-rpi4-arm64-1.spdx.json"} {
		if _, err := os.Stat(filepath.Join(dist, f)); err != nil {
			t.Errorf("%s missing: %v", f, err)
		}
		if !strings.Contains(string(sums), "  "+f+"\n") {
			t.Errorf("sha256sums lacks %s:\n%s", f, sums)
		}
	}
	got, _ := step.FileDigest(filepath.Join(dist, "k3os-rpi4-arm64-1.img"))
	if !strings.Contains(string(sums), got+"  k3os-rpi4-arm64-1.img\n") {
		t.Errorf("sha256sums does not match the image")
	}
}
