package apply

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// k3sImagesDir is where k3s imports image tarballs from at start.
const k3sImagesDir = "/var/lib/rancher/k3s/agent/images"

// imagesStep points k3s's images directory at the tarballs the card
// carries: the running version's (they change with it) and the
// cluster's own. The links are the agent's, named k3os-*; a user's own
// files there are left alone.
func imagesStep(ctx context.Context, c *Context) error {
	if !c.K3sPresent {
		return nil
	}
	dir := c.path(k3sImagesDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	want := map[string]string{}
	for prefix, src := range map[string]string{
		"k3os-system-":  filepath.Join(layout.StateMount, layout.SystemDir, c.Version, layout.VersionImages),
		"k3os-cluster-": filepath.Join(layout.StateMount, layout.ClusterImagesDir),
	} {
		entries, err := os.ReadDir(c.path(src))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				want[prefix+e.Name()] = filepath.Join(src, e.Name())
			}
		}
	}
	have, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range have {
		if target, ok := want[e.Name()]; ok {
			if got, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && got == target {
				delete(want, e.Name())
				continue
			}
		}
		if strings.HasPrefix(e.Name(), "k3os-") && e.Type()&fs.ModeSymlink != 0 {
			errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		errs = append(errs, os.Symlink(want[name], filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}
