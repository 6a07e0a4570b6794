package run

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// stepDir is a cached step output's directory name: the step's name and
// engine (see Runner.outDir), and its 32-hex-digit key.
var stepDir = regexp.MustCompile(`^(.+)-([0-9a-f]{32})$`)

// PruneSteps removes every cached step output under cache/steps except
// the most recently used one of each step and engine (step names carry the
// kernel flavour: one flavour's boot files stay beside another's; the
// runner touches an output each time it answers from it). Every config change leaves an image
// behind, every package change a root, so without this the cache only
// grows. It returns how many outputs it removed and the disk space they took.
func PruneSteps(cache string) (removed int, size int64, err error) {
	dir := filepath.Join(cache, "steps")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, 0, nil
	} else if err != nil {
		return 0, 0, err
	}
	type use struct {
		name, step string
		when       time.Time
	}
	newest := map[string]use{}
	var all []use
	for _, e := range entries {
		m := stepDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue // not a finished step output
		}
		info, err := e.Info()
		if err != nil {
			return removed, size, err
		}
		u := use{e.Name(), m[1], info.ModTime()}
		all = append(all, u)
		if n, ok := newest[u.step]; !ok || u.when.After(n.when) {
			newest[u.step] = u
		}
	}
	for _, u := range all {
		if newest[u.step].name == u.name {
			continue
		}
		p := filepath.Join(dir, u.name)
		n, err := dirSize(p)
		if err != nil {
			return removed, size, err
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, size, err
		}
		removed++
		size += n
	}
	return removed, size, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			// Blocks, not lengths: disk images are sparse.
			n += info.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	return n, err
}
