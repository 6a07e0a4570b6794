package plan

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Toolchains the steps run in. Each is a Debian root, cached by its
// definition; changing one rebuilds only the steps that use it.
var (
	// GoToolchain builds the project's Go programs (Debian's Go 1.26).
	GoToolchain = step.Toolchain{
		Suites:   []string{"trixie", "trixie-backports"},
		Arch:     "amd64",
		Packages: []string{"golang-1.26-go", "ca-certificates"},
	}
	// RootfsToolchain builds the Debian root: mmdebstrap, qemu-user for the
	// arm64 maintainer scripts, and squashfs-tools.
	RootfsToolchain = step.Toolchain{
		Suites: []string{"trixie", "trixie-updates"},
		Arch:   "amd64",
		Packages: []string{"mmdebstrap", "arch-test", "uidmap", "mount", "qemu-user", "qemu-user-binfmt",
			"apt-utils", "ca-certificates", "openssl", "squashfs-tools", "zstd"},
	}
	// ImageToolchain assembles the boot files and the SD-card image.
	ImageToolchain = step.Toolchain{
		Suites: []string{"trixie", "trixie-updates"},
		Arch:   "amd64",
		Packages: []string{"dosfstools", "mtools", "e2fsprogs", "fdisk", "squashfs-tools", "kmod", "cpio",
			"zstd", "xz-utils", "device-tree-compiler"},
	}
	// KernelToolchain cross-builds the kernel.
	KernelToolchain = step.Toolchain{
		Suites: []string{"trixie", "trixie-updates"},
		Arch:   "amd64",
		Packages: []string{"gcc", "libc6-dev", "gcc-aarch64-linux-gnu", "make", "bc", "bison", "flex", "libssl-dev", "libelf-dev", "perl",
			"cpio", "kmod", "xz-utils", "zstd", "ccache", "patch",
			"python3"}, // python3: generated headers of some drivers (drm/msm) in the full config
	}
	// VMToolchain runs the boot test's virtual machines (trixie's QEMU has
	// the raspi4b machine; bookworm's has not).
	VMToolchain = step.Toolchain{
		Suites:   []string{"trixie", "trixie-updates"},
		Arch:     "amd64",
		Packages: []string{"qemu-system-arm", "qemu-utils", "device-tree-compiler"},
	}
	// PostgresToolchain runs the PostgreSQL server of the boot test's
	// external-datastore case.
	PostgresToolchain = step.Toolchain{
		Suites:   []string{"trixie", "trixie-updates"},
		Arch:     "amd64",
		Packages: []string{"postgresql"},
	}
)

// Toolchains are every toolchain the plan uses.
var Toolchains = []step.Toolchain{GoToolchain, RootfsToolchain, ImageToolchain, KernelToolchain, VMToolchain, PostgresToolchain}

// ToolchainLockFile pins the exact Debian package set of each toolchain, so
// that the host engine's tools roots and the Dagger engine's containers
// hold the same versions (go tool mage toolchains:lock refreshes it).
const ToolchainLockFile = "pipeline/toolchains.lock"

// ReadToolchainLock reads "key package version" lines; a missing file is
// an empty lock.
func ReadToolchainLock(file string) (step.ToolchainLock, error) {
	l := step.ToolchainLock{}
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		if len(fs) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"toolchain package version\" (go tool mage toolchains:lock)", file, n)
		}
		if l[fs[0]] == nil {
			l[fs[0]] = map[string]string{}
		}
		l[fs[0]][fs[1]] = fs[2]
	}
	return l, sc.Err()
}

// AddToolsRoot records a tools root's package list (its .packages file:
// "package version arch" lines) as toolchain t's pins.
func AddToolsRoot(l step.ToolchainLock, t step.Toolchain, root string) error {
	b, err := os.ReadFile(filepath.Join(root, ".packages"))
	if err != nil {
		return err
	}
	pk := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			pk[f[0]] = f[1]
		}
	}
	l[t.Key()] = pk
	return nil
}

// WriteToolchainLock saves the lock.
func WriteToolchainLock(file string, l step.ToolchainLock) error {
	var b strings.Builder
	b.WriteString("# Every toolchain's Debian packages, exactly: go tool mage toolchains:lock\n")
	for _, k := range slices.Sorted(maps.Keys(l)) {
		for _, n := range slices.Sorted(maps.Keys(l[k])) {
			fmt.Fprintf(&b, "%s %s %s\n", k, n, l[k][n])
		}
	}
	return atomicfile.WriteFile(file, []byte(b.String()), 0o644)
}
