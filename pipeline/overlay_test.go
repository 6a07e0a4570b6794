package pipeline

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The overlay enables and masks units with symlinks, as systemctl does. A
// symlink that became a regular file holding its target's path (a copy
// or a checkout that does not keep links) leaves the unit silently off,
// or a config file systemd cannot read: every .wants entry must be a
// link to an existing unit, and no file may be a lost link.
func TestOverlayLinksAreLinks(t *testing.T) {
	root := filepath.Join("..", "overlay")
	links := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.Type()&fs.ModeSymlink != 0 {
			links++
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if target != "/dev/null" && strings.HasSuffix(filepath.Dir(rel), ".wants") {
				// The unit it enables is the overlay's own or Debian's.
				if _, err := os.Stat(filepath.Join(root, target)); err != nil && !strings.HasPrefix(filepath.Base(target), "systemd-") {
					t.Errorf("%s -> %s: no such unit in the overlay", rel, target)
				}
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := strings.TrimSpace(string(b))
		if strings.HasSuffix(filepath.Dir(rel), ".wants") || !strings.ContainsAny(s, " \n=") && strings.HasPrefix(s, "/") {
			t.Errorf("%s is a regular file holding %q: it must be a symlink (ln -sf %s %s)", rel, s, s, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if links == 0 {
		t.Fatal("no symlinks in the overlay: the unit links were lost")
	}
}
