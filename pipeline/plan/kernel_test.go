package plan

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// finalConfig is the .config a flavour's config step made, kept in
// kconfig/testdata (kernel/config/README.md says how to regenerate them).
func finalConfig(t *testing.T, flavour string) []byte {
	t.Helper()
	base := filepath.Join("..", "..", "kconfig", "testdata", flavour+".final.config")
	if b, err := os.ReadFile(base); err == nil {
		return b
	}
	f, err := os.Open(base + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkConfig runs a flavour's config step check on a final .config.
func checkConfig(t *testing.T, flavour string, final []byte) error {
	t.Helper()
	p, err := New(realOptions(flavour, settings.K3sNone))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "config"), final, 0o644); err != nil {
		t.Fatal(err)
	}
	return p.KernelConfig.Check(out)
}

// Every flavour built from source keeps, in the .config its merge made,
// each option its fragments ask for and each option of its lists (k3s's
// check-config, the Pi 4 hardware).
func TestKernelConfigsKeepEveryRequiredOption(t *testing.T) {
	for _, flavour := range []string{settings.KernelPi, settings.KernelFull, settings.KernelReduced} {
		t.Run(flavour, func(t *testing.T) {
			if err := checkConfig(t, flavour, finalConfig(t, flavour)); err != nil {
				t.Errorf("%v\n(if a fragment changed on purpose, regenerate kconfig/testdata/%s.final.config as kernel/config/README.md says)", err, flavour)
			}
		})
	}
}

// The check names what is missing and where it was asked for: the Pi's
// tryboot call, which the upgrades need, from both its fragment and the
// Pi 4 list.
func TestKernelConfigCheckNamesTheMissingOption(t *testing.T) {
	final := finalConfig(t, settings.KernelPi)
	line := []byte("CONFIG_RASPBERRYPI_FIRMWARE_TRYBOOT=y\n")
	if !bytes.Contains(final, line) {
		t.Fatal("the pi .config has no tryboot option to remove")
	}
	err := checkConfig(t, settings.KernelPi, bytes.Replace(final, line, nil, 1))
	if err == nil {
		t.Fatal("no error for a pi kernel without the tryboot call")
	}
	for _, want := range []string{"CONFIG_RASPBERRYPI_FIRMWARE_TRYBOOT: required y (" + filepath.Join(realOptions("", "").Project, "kernel/config/rpi4.config") + ":", "(Raspberry Pi 4 hardware:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// Each fragment in kernel/config is merged by some flavour, and each
// fragment a flavour names exists.
func TestKernelFragmentsAreAllUsed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "kernel", "config", "*.config"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for flavour, frags := range KernelFragments {
		for _, f := range frags {
			used[f] = true
			if !slices.Contains(files, filepath.Join("..", "..", "kernel", "config", f)) {
				t.Errorf("flavour %s merges %s, which kernel/config lacks", flavour, f)
			}
		}
	}
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("no flavour merges %s", f)
		}
	}
}

// A kernel that boots a Pi must carry the tryboot patch.
func TestKernelCheckWantsTheTrybootPatch(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "System.map")
	os.WriteFile(m, []byte("ffff800080010000 T _text\nffff800080a2b1c0 t "+TrybootSymbol+"\n"), 0o644)
	if err := hasSymbol(m, TrybootSymbol); err != nil {
		t.Error(err)
	}
	os.WriteFile(m, []byte("ffff800080010000 T _text\n"), 0o644)
	if err := hasSymbol(m, TrybootSymbol); err == nil || !strings.Contains(err.Error(), "tryboot patch") {
		t.Errorf("got %v, want an error naming the tryboot patch", err)
	}
}
