package release

import (
	"context"
	"encoding/json"
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
	m := Manifest{Version: "1", K3s: "none"}
	cards := []Card{{Image: img, Name: filepath.Base(img), Manifest: m}, {Image: img, Name: "k3s-2.img", Manifest: m}}
	if err := Publish(context.Background(), dist, cards, []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "sha256sums"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"k3os-rpi4-arm64-1.img", "k3os-rpi4-arm64-1.img.zst", "k3os-rpi4-arm64-1.manifest.json", "k3os-rpi4-arm64-1.spdx.json",
		"k3s-2.img", "k3s-2.img.zst", "k3s-2.manifest.json"} {
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
	// The images carry the nodes' secrets: readable by their owner only.
	for _, f := range []string{"k3os-rpi4-arm64-1.img", "k3os-rpi4-arm64-1.img.zst", "k3s-2.img.zst"} {
		if fi, err := os.Stat(filepath.Join(dist, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", f, fi.Mode(), err)
		}
	}
	// The Raspberry Pi Imager repository names the .zst and the sums.
	if err := WriteImagerList(dist, "https://example.com/r/", "k3os-rpi4-arm64-1.img", "2026-12-01"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dist, ImagerName))
	var list struct {
		OSList []imagerItem `json:"os_list"`
	}
	if err := json.Unmarshal(b, &list); err != nil || len(list.OSList) != 1 {
		t.Fatalf("%s: %v\n%s", ImagerName, err, b)
	}
	it := list.OSList[0]
	zsum, _ := step.FileDigest(filepath.Join(dist, "k3os-rpi4-arm64-1.img.zst"))
	if it.URL != "https://example.com/r/k3os-rpi4-arm64-1.img.zst" || it.ExtractSHA256 != got || it.ImageDownloadSHA256 != zsum ||
		it.ExtractSize != 1<<20+4 || it.Devices[0] != "pi4" {
		t.Errorf("imager item %+v", it)
	}
}
