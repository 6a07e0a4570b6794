package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Manifest describes an image: what it holds and for which nodes.
type Manifest struct {
	Image   string            `json:"image"`
	Version string            `json:"version"`
	Kernel  ManifestKernel    `json:"kernel"`
	K3s     string            `json:"k3s"`
	Nodes   []ManifestNode    `json:"nodes"`
	SHA256  map[string]string `json:"sha256"`
}

// ManifestKernel names the kernel an image carries.
type ManifestKernel struct {
	Flavour string `json:"flavour"`
	Release string `json:"release"`
}

// ManifestNode is one node config on the image.
type ManifestNode struct {
	MAC      string `json:"mac"` // "default" for default.yaml
	Hostname string `json:"hostname,omitempty"`
	Role     string `json:"role"`
}

// Release reads a root's k3os-release file.
func Release(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return diskimage.ParseRelease(b), nil
}

// Publish puts an image's outputs into dist: the image, its .zst, the
// manifest, the SBOM and sha256sums; every file lands whole or not at all.
func Publish(ctx context.Context, dist, image string, m Manifest, sbom []byte) error {
	name := filepath.Base(image)
	dst := filepath.Join(dist, name)
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	// A hard link into the step cache is instant; across filesystems, copy.
	tmp := dst + ".tmp-link"
	os.Remove(tmp)
	if err := os.Link(image, tmp); err == nil {
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	} else if err := atomicfile.Copy(image, dst); err != nil {
		return err
	}
	m.SHA256 = map[string]string{}
	// One read of the image: its hash and its .zst (and that one's hash).
	imgSum, zstSum, err := compress(ctx, dst, dst+".zst")
	if err != nil {
		return err
	}
	m.SHA256[name], m.SHA256[name+".zst"] = imgSum, zstSum
	base := strings.TrimSuffix(name, ".img")
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{base + ".manifest.json": append(mj, '\n'), base + ".spdx.json": sbom}
	for f, b := range files {
		if err := atomicfile.WriteFile(filepath.Join(dist, f), b, 0o644); err != nil {
			return err
		}
		h := sha256.Sum256(b)
		m.SHA256[f] = hex.EncodeToString(h[:])
	}
	var sums strings.Builder
	for _, f := range slices.Sorted(maps.Keys(m.SHA256)) {
		fmt.Fprintf(&sums, "%s  %s\n", m.SHA256[f], f)
	}
	return atomicfile.WriteFile(filepath.Join(dist, "sha256sums"), []byte(sums.String()), 0o644)
}

// compress writes src as zstd to dst, atomically, and returns the sha256 of
// both. The source's hash is computed beside the compression, on the other
// core: the image is read from the page cache twice, in parallel.
func compress(ctx context.Context, src, dst string) (srcSum, dstSum string, err error) {
	sumc := make(chan error, 1)
	go func() {
		var err error
		srcSum, err = step.FileDigest(src)
		sumc <- err
	}()
	in, err := os.Open(src)
	if err != nil {
		return "", "", err
	}
	defer in.Close()
	hOut := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		zw, err := zstd.NewWriter(io.MultiWriter(pw, hOut), zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.NumCPU()))
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		_, err = io.Copy(zw, in)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	err = atomicfile.Write(dst, 0o644, pr)
	if serr := <-sumc; err == nil {
		err = serr
	}
	if err != nil {
		return "", "", err
	}
	return srcSum, hex.EncodeToString(hOut.Sum(nil)), nil
}
