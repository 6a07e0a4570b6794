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
	"github.com/k3os-rpi/k3os-rpi4/pipeline/images"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Manifest describes an image: what it holds and for which nodes.
type Manifest struct {
	Image   string         `json:"image"`
	Version string         `json:"version"`
	Kernel  ManifestKernel `json:"kernel"`
	K3s     string         `json:"k3s"`
	Nodes   []ManifestNode `json:"nodes"`
	// Images are the container images k3s imports at start.
	Images []images.Image    `json:"images,omitempty"`
	SHA256 map[string]string `json:"sha256"`
}

// ManifestKernel names the kernel an image carries.
type ManifestKernel struct {
	Flavour string `json:"flavour"`
	Release string `json:"release"`
	// ConfigSHA256 is the sha256 of the kernel's final .config.
	ConfigSHA256 string `json:"config_sha256"`
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

// Card is one image of a job: the image step's file and its name in dist.
type Card struct {
	Image, Name string
	Manifest    Manifest
}

// Publish puts the job's cards into dist: each image, its .zst, its
// manifest and the SBOM, then sha256sums of them all; every file lands
// whole or not at all. Images hold the nodes' secrets: they and their
// .zst are 0600.
func Publish(ctx context.Context, dist string, cards []Card, sbom []byte) error {
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	sums := map[string]string{}
	for _, c := range cards {
		if err := publishCard(ctx, dist, c, sbom, sums); err != nil {
			return err
		}
	}
	var b strings.Builder
	for _, f := range slices.Sorted(maps.Keys(sums)) {
		fmt.Fprintf(&b, "%s  %s\n", sums[f], f)
	}
	return atomicfile.WriteFile(filepath.Join(dist, "sha256sums"), []byte(b.String()), 0o644)
}

func publishCard(ctx context.Context, dist string, c Card, sbom []byte, sums map[string]string) error {
	dst := filepath.Join(dist, c.Name)
	// A hard link into the step cache is instant; across filesystems, copy.
	tmp := dst + ".tmp-link"
	os.Remove(tmp)
	if err := os.Link(c.Image, tmp); err == nil {
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
	} else if err := atomicfile.Copy(c.Image, dst); err != nil {
		return err
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return err
	}
	m := c.Manifest
	m.Image = c.Name
	m.SHA256 = map[string]string{}
	// One read of the image: its hash and its .zst (and that one's hash).
	imgSum, zstSum, err := compress(ctx, dst, dst+".zst")
	if err != nil {
		return err
	}
	m.SHA256[c.Name], m.SHA256[c.Name+".zst"] = imgSum, zstSum
	base := strings.TrimSuffix(c.Name, ".img")
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
	maps.Copy(sums, m.SHA256)
	return nil
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
	pr := zstdStream(in, hOut, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.NumCPU()))
	defer pr.Close()
	err = atomicfile.Write(dst, 0o600, pr)
	if serr := <-sumc; err == nil {
		err = serr
	}
	if err != nil {
		return "", "", err
	}
	return srcSum, hex.EncodeToString(hOut.Sum(nil)), nil
}

// zstdStream compresses r on a goroutine of its own: the reader returned
// gives the compressed bytes, also written to tee when it is not nil.
// Closing it stops the compression.
func zstdStream(r io.Reader, tee io.Writer, opts ...zstd.EOption) *io.PipeReader {
	pr, pw := io.Pipe()
	var w io.Writer = pw
	if tee != nil {
		w = io.MultiWriter(pw, tee)
	}
	go func() {
		zw, err := zstd.NewWriter(w, opts...)
		if err == nil {
			_, err = io.Copy(zw, r)
			if cerr := zw.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// ImagerName is the Raspberry Pi Imager repository file the image job
// writes when it knows where the release is published.
const ImagerName = "k3os-rpi4-arm64.rpi-imager.json"

// imagerItem is one image of a Raspberry Pi Imager repository (its
// os_list): image_download_sha256 is not in Imager's schema but is what it
// checks its cache with.
type imagerItem struct {
	Name                string   `json:"name"`
	Description         string   `json:"description"`
	Icon                string   `json:"icon"`
	Website             string   `json:"website,omitempty"`
	URL                 string   `json:"url"`
	ExtractSize         int64    `json:"extract_size"`
	ExtractSHA256       string   `json:"extract_sha256"`
	ImageDownloadSize   int64    `json:"image_download_size"`
	ImageDownloadSHA256 string   `json:"image_download_sha256"`
	ReleaseDate         string   `json:"release_date"`
	Devices             []string `json:"devices"`
	Architecture        string   `json:"architecture"`
}

// WriteImagerList writes the Imager repository naming a published card's
// .zst at baseURL into dist: `rpi-imager --repo <baseURL>/<ImagerName>`.
func WriteImagerList(dist, baseURL, card, date string) error {
	mb, err := os.ReadFile(filepath.Join(dist, strings.TrimSuffix(card, ".img")+".manifest.json"))
	if err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return err
	}
	img := filepath.Join(dist, card)
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	zi, err := os.Stat(img + ".zst")
	if err != nil {
		return err
	}
	sums := m.SHA256
	item := imagerItem{
		Name:                "k3OS for Raspberry Pi 4 " + m.Version,
		Description:         fmt.Sprintf("A read-only Linux that runs k3s (%s), every node configured by its own YAML file; kernel %s", m.K3s, m.Kernel.Release),
		URL:                 strings.TrimSuffix(baseURL, "/") + "/" + card + ".zst",
		ExtractSize:         fi.Size(),
		ExtractSHA256:       sums[card],
		ImageDownloadSize:   zi.Size(),
		ImageDownloadSHA256: sums[card+".zst"],
		ReleaseDate:         date,
		Devices:             []string{"pi4"},
		Architecture:        "armv8",
	}
	if item.ExtractSHA256 == "" || item.ImageDownloadSHA256 == "" {
		return fmt.Errorf("%s: the card's manifest has no sha256 of it", card)
	}
	b, err := json.MarshalIndent(map[string][]imagerItem{"os_list": {item}}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dist, ImagerName), append(b, '\n'), 0o644)
}
