package ci

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strings"
)

// DebianMirror is the Debian mirror; DEBIAN_MIRROR overrides it.
func DebianMirror() string {
	if m := os.Getenv("DEBIAN_MIRROR"); m != "" {
		return strings.TrimSuffix(m, "/")
	}
	return "http://deb.debian.org/debian"
}

// LockedDeb is one line of rootfs/packages.lock.
type LockedDeb struct {
	Package, Version, Path, SHA256 string
	Size                           int64
}

// ReadDebLock reads a package lock: "package version pool-path size sha256"
// per line, as `build.sh lock` writes it.
func ReadDebLock(file string) ([]LockedDeb, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w (make it with: go tool mage rootfs:lock)", err)
	}
	defer f.Close()
	var out []LockedDeb
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var d LockedDeb
		if _, err := fmt.Sscan(line, &d.Package, &d.Version, &d.Path, &d.Size, &d.SHA256); err != nil || len(d.SHA256) != 64 {
			return nil, fmt.Errorf("%s:%d: want \"package version path size sha256\" (regenerate with go tool mage rootfs:lock)", file, n)
		}
		out = append(out, d)
	}
	return out, sc.Err()
}

// Downloads returns the locked debs as pinned downloads from the mirror.
func debDownloads(debs []LockedDeb, mirror string) []Download {
	out := make([]Download, len(debs))
	for i, d := range debs {
		out[i] = Download{URL: mirror + "/" + d.Path, SHA256: d.SHA256, Name: path.Base(d.Path)}
	}
	return out
}
