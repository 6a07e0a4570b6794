package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// saveImage writes a docker-save tarball of an arm64 image tagged tag,
// the way `docker save` (and go-containerregistry) write them, and
// returns the image's config digest.
func saveImage(t *testing.T, path, tag string) string {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", "arm64"
	cf.Config.Entrypoint = []string{"/pause"}
	if img, err = mutate.ConfigFile(empty.Image, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// tarOf writes a tar holding the given files.
func tarOf(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for n, body := range files {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClusterReadsNamesAndDigests(t *testing.T) {
	cfg := t.TempDir()
	dir := filepath.Join(cfg, "images")
	os.Mkdir(dir, 0o755)
	want := saveImage(t, filepath.Join(dir, "pause.tar"), "rancher/pause:3.1")
	// The same image gzipped, under a suffix k3s imports.
	plain, _ := os.ReadFile(filepath.Join(dir, "pause.tar"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	os.WriteFile(filepath.Join(dir, "app.tar.gz"), gz.Bytes(), 0o644)
	// An OCI layout names its image in the index's annotation.
	tarOf(t, filepath.Join(dir, "web.tar"), map[string]string{
		"oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"index.json": `{"manifests":[{"digest":"sha256:abc","annotations":{"io.containerd.image.name":"docker.io/library/web:1.0"}}]}`,
	})

	got, ims, err := Cluster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got != dir {
		t.Errorf("dir %q, want %q", got, dir)
	}
	byFile := map[string]Image{}
	for _, im := range ims {
		byFile[im.File] = im
		if im.From != "cluster" {
			t.Errorf("%s: from %q, want cluster", im.File, im.From)
		}
	}
	for _, f := range []string{"pause.tar", "app.tar.gz"} {
		if im := byFile[f]; im.Name != "index.docker.io/rancher/pause:3.1" && im.Name != "rancher/pause:3.1" || im.Digest != want {
			t.Errorf("%s: %+v, want rancher/pause:3.1 %s", f, im, want)
		}
	}
	if im := byFile["web.tar"]; im.Name != "docker.io/library/web:1.0" || im.Digest != "sha256:abc" {
		t.Errorf("web.tar: %+v", im)
	}
}

func TestClusterWithoutImages(t *testing.T) {
	dir, ims, err := Cluster(t.TempDir())
	if dir != "" || ims != nil || err != nil {
		t.Errorf("Cluster of a config dir with no images/ = %q, %v, %v; want nothing", dir, ims, err)
	}
}

// Each bad file is named, with what to do; the good ones do not hide it.
func TestClusterNamesEveryBadFile(t *testing.T) {
	cfg := t.TempDir()
	dir := filepath.Join(cfg, "images")
	os.Mkdir(dir, 0o755)
	saveImage(t, filepath.Join(dir, "good.tar"), "example.com/app:1")
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hi"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.tar"), []byte("this is not a tar file, it is a sentence long enough"), 0o644)
	tarOf(t, filepath.Join(dir, "unnamed.tar"), map[string]string{"index.json": `{"manifests":[{"digest":"sha256:abc"}]}`})
	tarOf(t, filepath.Join(dir, "badname.tar"), map[string]string{"manifest.json": `[{"Config":"blobs/sha256/abc","RepoTags":["Not A Name!"]}]`})

	_, _, err := Cluster(cfg)
	if err == nil {
		t.Fatal("bad image files accepted")
	}
	for _, want := range []string{
		filepath.Join(dir, "notes.txt") + ": not an image tarball",
		filepath.Join(dir, "broken.tar") + ": not a tar file",
		filepath.Join(dir, "unnamed.tar") + ": it names no image",
		filepath.Join(dir, "badname.tar") + `: image name "Not A Name!"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "good.tar") {
		t.Errorf("error names the good file:\n%v", err)
	}
}

func TestStagedReadsTheStepsLists(t *testing.T) {
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "images"), 0o755)
	os.MkdirAll(filepath.Join(out, "lists"), 0o755)
	os.WriteFile(filepath.Join(out, "images", "k3s-airgap-images-arm64.tar.zst"), nil, 0o644)
	os.WriteFile(filepath.Join(out, "lists", "k3s-airgap-images-arm64.tar.zst.manifest.json"),
		[]byte(`[{"Config":"blobs/sha256/1111.json","RepoTags":["docker.io/rancher/mirrored-pause:3.6"]},{"Config":"2222.json","RepoTags":["docker.io/rancher/mirrored-coredns-coredns:1.12.1"]}]`), 0o644)
	ims, err := Staged(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 2 || ims[0].Digest != "sha256:1111" || ims[1].Digest != "sha256:2222" || ims[0].From != "k3s" ||
		ims[1].Name != "docker.io/rancher/mirrored-coredns-coredns:1.12.1" {
		t.Errorf("Staged = %+v", ims)
	}
}

func TestIsTarball(t *testing.T) {
	for n, want := range map[string]bool{"a.tar": true, "a.tar.gz": true, "a.tgz": true, "a.tar.zst": true, "a.zip": false, "tar": false} {
		if IsTarball(n) != want {
			t.Errorf("IsTarball(%q) = %v", n, !want)
		}
	}
}
