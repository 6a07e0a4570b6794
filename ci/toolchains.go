package ci

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Toolchains are every toolchain the plan uses.
var Toolchains = []Toolchain{GoToolchain, RootfsToolchain, ImageToolchain, KernelToolchain, VMToolchain, PostgresToolchain}

// ToolchainLockFile pins the exact Debian package set of each toolchain, so
// that the host engine's tools roots and the Dagger engine's containers
// hold the same versions (go tool mage toolchains:lock refreshes it).
const ToolchainLockFile = "ci/toolchains.lock"

// ToolchainLock maps a toolchain's key to its packages and their versions.
type ToolchainLock map[string]map[string]string

// Pins returns a toolchain's packages as "name=version", sorted; nil when
// the lock has none for it.
func (l ToolchainLock) Pins(t Toolchain) []string {
	pk := l[t.Key()]
	if len(pk) == 0 {
		return nil
	}
	out := make([]string, 0, len(pk))
	for name, v := range pk {
		out = append(out, name+"="+v)
	}
	sort.Strings(out)
	return out
}

// ReadToolchainLock reads "key package version" lines; a missing file is
// an empty lock.
func ReadToolchainLock(file string) (ToolchainLock, error) {
	l := ToolchainLock{}
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

// AddRoot records a tools root's package list (its .packages file:
// "package version arch" lines) as toolchain t's pins.
func (l ToolchainLock) AddRoot(t Toolchain, root string) error {
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

// Write saves the lock.
func (l ToolchainLock) Write(file string) error {
	var b strings.Builder
	b.WriteString("# Every toolchain's Debian packages, exactly: go tool mage toolchains:lock\n")
	for _, k := range slices.Sorted(maps.Keys(l)) {
		for _, n := range slices.Sorted(maps.Keys(l[k])) {
			fmt.Fprintf(&b, "%s %s %s\n", k, n, l[k][n])
		}
	}
	return WriteFileAtomic(file, []byte(b.String()), 0o644)
}
