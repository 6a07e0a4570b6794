package plan

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

func TestToolchainLock(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, ".packages"), []byte("golang-1.26-go 1.26.11-1~bpo13+1 amd64\nca-certificates 20250419+deb13u1 all\n"), 0o644)
	l := step.ToolchainLock{}
	if err := AddToolsRoot(l, GoToolchain, root); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "toolchains.lock")
	if err := WriteToolchainLock(file, l); err != nil {
		t.Fatal(err)
	}
	got, err := ReadToolchainLock(file)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ca-certificates=20250419+deb13u1", "golang-1.26-go=1.26.11-1~bpo13+1"}
	if diff := cmp.Diff(want, got.Pins(GoToolchain)); diff != "" {
		t.Errorf("Pins (-want +got):\n%s", diff)
	}
	if got.Pins(ImageToolchain) != nil {
		t.Error("a toolchain without entries has pins")
	}
	if l, err := ReadToolchainLock(filepath.Join(dir, "absent")); err != nil || len(l) != 0 {
		t.Errorf("a missing lock = %v, %v; want empty", l, err)
	}
	os.WriteFile(file, []byte("key pkg\n"), 0o644)
	if _, err := ReadToolchainLock(file); err == nil {
		t.Error("a bad line passed")
	}
}

// The committed lock covers every toolchain the plan uses.
func TestCommittedToolchainLock(t *testing.T) {
	l, err := ReadToolchainLock("../../" + ToolchainLockFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range Toolchains {
		pins := l.Pins(tc)
		if pins == nil {
			t.Errorf("%s has no entry for toolchain %s (%v): run go tool mage toolchains:lock", ToolchainLockFile, tc.Key(), tc.Packages)
			continue
		}
		for _, p := range tc.Packages {
			if _, ok := l[tc.Key()][p]; !ok {
				t.Errorf("toolchain %s: %s is not pinned", tc.Key(), p)
			}
		}
	}
}
