package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The most recently used output of each step and engine stays, whatever
// its age; older outputs of the same step go; unfinished builds are left
// alone.
func TestPruneSteps(t *testing.T) {
	cache := t.TempDir()
	steps := filepath.Join(cache, "steps")
	key := func(c string) string { return strings.Repeat(c, 32) }
	old := time.Now().Add(-48 * time.Hour)
	for name, age := range map[string]time.Duration{
		"image-pi@host-" + key("1"):    3 * time.Hour,
		"image-pi@host-" + key("2"):    time.Hour, // newest pi image
		"image-pi@host-" + key("3"):    2 * time.Hour,
		"image-full@host-" + key("4"):  7 * time.Hour, // another flavour: kept
		"image-pi@dagger-" + key("5"):  8 * time.Hour, // another engine: kept
		"rootfs-base@host-" + key("a"): 5 * time.Hour, // the only rootfs-base
		"kernel-full@host-" + key("b"): time.Hour,
		"kernel-full@host-" + key("c"): 4 * time.Hour,
		".tmp-image-123456":            6 * time.Hour,
	} {
		d := filepath.Join(steps, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "out"), make([]byte, 1000), 0o644)
		when := old.Add(48*time.Hour - age)
		os.Chtimes(d, when, when)
	}
	var want int64
	for _, doomed := range []string{"image-pi@host-" + key("1"), "image-pi@host-" + key("3"), "kernel-full@host-" + key("c")} {
		n, _ := dirSize(filepath.Join(steps, doomed))
		want += n
	}
	n, size, err := PruneSteps(cache)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || size != want || size < 3000 {
		t.Errorf("removed %d outputs of %d bytes, want 3 of %d", n, size, want)
	}
	entries, _ := os.ReadDir(steps)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	wantLeft := []string{".tmp-image-123456", "image-full@host-" + key("4"), "image-pi@dagger-" + key("5"), "image-pi@host-" + key("2"),
		"kernel-full@host-" + key("b"), "rootfs-base@host-" + key("a")}
	if strings.Join(left, " ") != strings.Join(wantLeft, " ") {
		t.Errorf("left %v, want %v", left, wantLeft)
	}
	if n, _, err := PruneSteps(t.TempDir()); n != 0 || err != nil {
		t.Errorf("an empty cache: %d removed, %v", n, err)
	}
}
