package ci

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// K3sLock is rootfs/k3s.lock: the k3s release images download by default.
type K3sLock struct {
	Version string
	URL     string // of k3s-arm64
	SHA256  string
}

// ReadK3sLock reads "key value" lines: version, url, sha256.
func ReadK3sLock(file string) (K3sLock, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return K3sLock{}, err
	}
	var l K3sLock
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 2 {
			return l, fmt.Errorf("%s:%d: want \"key value\"", file, n+1)
		}
		switch f[0] {
		case "version":
			l.Version = f[1]
		case "url":
			l.URL = f[1]
		case "sha256":
			l.SHA256 = f[1]
		default:
			return l, fmt.Errorf("%s:%d: unknown key %q (version, url, sha256)", file, n+1, f[0])
		}
	}
	if l.Version == "" || l.URL == "" || len(l.SHA256) != 64 {
		return l, fmt.Errorf("%s: needs version, url and a sha256", file)
	}
	return l, nil
}

// k3sInput turns the K3S option into the rootfs step's k3s input and a
// description for the release file and manifest:
//
//	K3S unset or "release"  the release pinned in rootfs/k3s.lock (download)
//	K3S=file:PATH           a local k3s binary (offline builds)
//	K3S=none                no k3s in the image
func (p *Plan) k3sInput() (*Input, string, error) {
	switch v := p.K3S; {
	case v == K3sNone:
		return nil, K3sNone, nil
	case strings.HasPrefix(v, "file:"):
		path := strings.TrimPrefix(v, "file:")
		if !filepath.IsAbs(path) {
			path = filepath.Join(p.project, path)
		}
		sum, err := FileSHA256(path)
		if err != nil {
			return nil, "", fmt.Errorf("K3S=%s: %w", v, err)
		}
		// A local file is pinned by its content, like a download.
		return &Input{Name: "k3s", Download: &Download{URL: "file:" + path, SHA256: sum}}, "file sha256:" + sum, nil
	case v == "" || v == "release":
		lock, err := ReadK3sLock(filepath.Join(p.project, "rootfs", "k3s.lock"))
		if err != nil {
			return nil, "", err
		}
		return &Input{Name: "k3s", Download: &Download{URL: lock.URL, SHA256: lock.SHA256},
				Hint: "build offline with K3S=file:/path/to/k3s-arm64, or without k3s with K3S=none"},
			"release " + lock.Version, nil
	default:
		return nil, "", fmt.Errorf("K3S=%s: use K3S=none, K3S=file:/path/to/k3s-arm64, or leave it unset for the release in rootfs/k3s.lock", v)
	}
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
