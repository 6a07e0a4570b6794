package plan

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// PackagesLockFile pins every package of the root.
const PackagesLockFile = "rootfs/packages.lock"

// LockedDeb is one line of a package lock (rootfs/packages.lock, kernel/kernel.lock).
type LockedDeb struct {
	Package, Version, Path, SHA256 string
	Size                           int64
}

// ReadDebLock reads a package lock: "package version pool-path size sha256"
// per line, as `build.sh lock` writes it.
func ReadDebLock(file string) ([]LockedDeb, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w (make it with: go tool mage rootfs:lock or kernel:lock)", err)
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
			return nil, fmt.Errorf("%s:%d: want \"package version path size sha256\" (regenerate it with its lock target)", file, n)
		}
		out = append(out, d)
	}
	return out, sc.Err()
}

// debDownloads returns the locked debs as pinned downloads from the mirror.
func debDownloads(debs []LockedDeb, mirror string) []step.Download {
	out := make([]step.Download, len(debs))
	for i, d := range debs {
		out[i] = step.Download{URL: mirror + "/" + d.Path, SHA256: d.SHA256, Name: path.Base(d.Path)}
	}
	return out
}
