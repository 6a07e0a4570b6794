// Package images reads container image tarballs, the ones a card carries
// for k3s to import at start: what each holds (names and digests), with
// errors that name the file.
package images

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/klauspost/compress/zstd"
)

// Suffixes are the tarballs k3s imports at start.
var Suffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.zst"}

// IsTarball says whether a file name is one of Suffixes.
func IsTarball(name string) bool {
	return slices.ContainsFunc(Suffixes, func(s string) bool { return strings.HasSuffix(name, s) })
}

// Image is one container image a card carries for k3s to import.
type Image struct {
	Name string `json:"name"`
	// Digest is the image's config digest (its image id), or for an OCI
	// layout its manifest's.
	Digest string `json:"digest"`
	File   string `json:"file"`
	// From says whose it is: "k3s" (K3S_IMAGES, with the version) or
	// "cluster" (CONFIG_DIR/images).
	From string `json:"from"`
}

// dockerManifest is `docker save`'s manifest.json.
type dockerManifest []struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
}

// ociIndex is an OCI image layout's index.json.
type ociIndex struct {
	Manifests []struct {
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// imagesOf reads what a tarball's manifest.json (docker) or index.json
// (OCI) says it holds: each image's names and digest. Each name must be
// a valid image reference.
func imagesOf(file string, manifest, index []byte) ([]Image, error) {
	var out []Image
	if manifest != nil {
		var m dockerManifest
		if err := json.Unmarshal(manifest, &m); err != nil {
			return nil, fmt.Errorf("its manifest.json: %w", err)
		}
		for _, e := range m {
			// docker save writes "<hex>.json" (older) or
			// "blobs/sha256/<hex>" (newer); go-containerregistry "sha256:<hex>".
			hex := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(e.Config, "blobs/sha256/"), "sha256:"), ".json")
			digest := "sha256:" + hex
			for _, t := range e.RepoTags {
				out = append(out, Image{Name: t, Digest: digest, File: file})
			}
		}
	}
	if index != nil && len(out) == 0 {
		var ix ociIndex
		if err := json.Unmarshal(index, &ix); err != nil {
			return nil, fmt.Errorf("its index.json: %w", err)
		}
		for _, m := range ix.Manifests {
			n := m.Annotations["io.containerd.image.name"]
			if n == "" {
				n = m.Annotations["org.opencontainers.image.ref.name"]
			}
			if n != "" {
				out = append(out, Image{Name: n, Digest: m.Digest, File: file})
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("it names no image (no RepoTags in manifest.json, no image names in index.json): save it with its name, e.g. `docker save NAME:TAG` or `ctr images export`")
	}
	for _, im := range out {
		if _, err := name.ParseReference(im.Name); err != nil {
			return nil, fmt.Errorf("image name %q: %w", im.Name, err)
		}
	}
	return out, nil
}

// readTarball reads an image tarball (plain, gzip or zstd, by its name)
// to its end and returns what it holds.
func readTarball(path string) ([]Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch n := filepath.Base(path); {
	case strings.HasSuffix(n, ".tar.zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	var manifest, index []byte
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar file: %w", err)
		}
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "manifest.json":
			manifest, err = io.ReadAll(io.LimitReader(tr, 16<<20))
		case "index.json":
			index, err = io.ReadAll(io.LimitReader(tr, 16<<20))
		}
		if err != nil {
			return nil, err
		}
	}
	return imagesOf(filepath.Base(path), manifest, index)
}

// Cluster checks the cluster's own image tarballs (CONFIG_DIR/images)
// and returns their directory ("" when there is none) and what they hold;
// every problem names its file.
func Cluster(configDir string) (string, []Image, error) {
	dir := filepath.Join(configDir, "images")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	var out []Image
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.Type().IsRegular() || !IsTarball(e.Name()) {
			errs = append(errs, fmt.Errorf("%s: not an image tarball (a file ending %s; `docker save NAME:TAG -o %s.tar`)", p, strings.Join(Suffixes, ", "), e.Name()))
			continue
		}
		ims, err := readTarball(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		for i := range ims {
			ims[i].From = "cluster"
		}
		out = append(out, ims...)
	}
	if err := errors.Join(errs...); err != nil {
		return "", nil, err
	}
	if len(out) == 0 {
		return "", nil, nil
	}
	return dir, out, nil
}

// Staged reads what the k3s-images step's tarballs hold from the lists
// it made.
func Staged(stepOut string) ([]Image, error) {
	entries, err := os.ReadDir(filepath.Join(stepOut, "images"))
	if err != nil {
		return nil, err
	}
	var out []Image
	var errs []error
	for _, e := range entries {
		read := func(kind string) []byte {
			b, _ := os.ReadFile(filepath.Join(stepOut, "lists", e.Name()+"."+kind+".json"))
			return b
		}
		ims, err := imagesOf(e.Name(), read("manifest"), read("index"))
		if err != nil {
			errs = append(errs, fmt.Errorf("K3S_IMAGES: %s: %w", e.Name(), err))
			continue
		}
		for i := range ims {
			ims[i].From = "k3s"
		}
		out = append(out, ims...)
	}
	return out, errors.Join(errs...)
}
