package kconfig

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fragments live in kernel/config at the root of the repository; the
// positions in messages name them from there, as the build does.
const fragmentDir = "../kernel/config"

func fragmentName(file string) string { return "kernel/config/" + file }

func loadFragment(t *testing.T, file string) Config {
	t.Helper()
	f, err := os.Open(filepath.Join(fragmentDir, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseNamed(f, fragmentName(file))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loadFinal reads a final .config kept in testdata, gzipped or not.
func loadFinal(t *testing.T, path string) Config {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	c, err := ParseNamed(r, path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reducedFragments are the fragments of the reduced kernel, whose merged
// .config testdata/reduced.final.config is (the plan's own check of every
// flavour is in pipeline/plan).
var reducedFragments = []string{"systemd.config", "nomodules.config", "k3s.config", "qemu-virt.config"}

func TestCheckNamesMissingMemcg(t *testing.T) {
	k3s := loadFragment(t, "k3s.config")
	memcg, ok := k3s["CONFIG_MEMCG"]
	if !ok || memcg.Value != "y" {
		t.Fatalf("k3s.config should ask for CONFIG_MEMCG=y, has %+v", memcg)
	}
	var frags []Config
	for _, f := range reducedFragments {
		frags = append(frags, loadFragment(t, f))
	}
	req, err := Required(frags...)
	if err != nil {
		t.Fatal(err)
	}
	final := loadFinal(t, "testdata/reduced.final.config")
	if probs := Check(final, req); len(probs) != 0 {
		t.Fatalf("the unmodified final config already fails: %v", probs)
	}

	for _, edit := range []struct {
		name string
		do   func(Config)
	}{
		{"line removed", func(c Config) { delete(c, "CONFIG_MEMCG") }},
		{"is not set", func(c Config) { c["CONFIG_MEMCG"] = Option{Value: "n"} }},
	} {
		t.Run(edit.name, func(t *testing.T) {
			broken := Config{}
			for n, o := range final {
				broken[n] = o
			}
			edit.do(broken)
			probs := Check(broken, req)
			if len(probs) != 1 {
				t.Fatalf("got %d problems %v, want exactly one for CONFIG_MEMCG", len(probs), probs)
			}
			want := "CONFIG_MEMCG: required y (" + memcg.Pos.String() + "), final .config has it unset"
			if probs[0].Name != "CONFIG_MEMCG" || probs[0].String() != want {
				t.Errorf("got %q, want %q", probs[0], want)
			}
			if !strings.HasPrefix(memcg.Pos.String(), "kernel/config/k3s.config:") {
				t.Errorf("position %s does not name kernel/config/k3s.config", memcg.Pos)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	in, err := os.ReadFile("testdata/reduced.final.config")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(in), "\n") {
		if l != "CONFIG_MEMCG=y" {
			kept = append(kept, l)
		}
	}
	finalPath := filepath.Join(dir, ".config")
	if err := os.WriteFile(finalPath, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var frags []string
	for _, f := range reducedFragments {
		frags = append(frags, filepath.Join(fragmentDir, f))
	}
	probs, err := CheckFiles(finalPath, frags...)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 1 || probs[0].Name != "CONFIG_MEMCG" {
		t.Fatalf("got %v, want one problem for CONFIG_MEMCG", probs)
	}
	if !strings.Contains(probs[0].String(), filepath.Join(fragmentDir, "k3s.config")+":") {
		t.Errorf("%q does not name the fragment file", probs[0])
	}
	if _, err := CheckFiles(filepath.Join(dir, "missing"), frags...); err == nil {
		t.Error("no error for a missing final .config")
	}
}

// TestFragmentsAreReadable keeps the fragments in the shape the README
// promises: a header comment, every group of options introduced by a
// comment saying why, no option twice in one file, and only lines the
// kernel's reader understands.
func TestFragmentsAreReadable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fragmentDir, "*.config"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("found %v in %s, want at least systemd, k3s, cluster, rpi4, qemu-virt and nodebug", files, fragmentDir)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			c := loadFragment(t, name)
			if len(c) == 0 {
				t.Fatal("sets no option")
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			seen := map[string]int{}
			line, groupStart := 0, true
			groupHasComment := false
			for sc.Scan() {
				line++
				l := sc.Text()
				if line == 1 && !strings.HasPrefix(l, "# "+name+":") {
					t.Errorf("line 1 should start %q, the file's purpose", "# "+name+":")
				}
				if strings.TrimSpace(l) == "" {
					groupStart, groupHasComment = true, false
					continue
				}
				n, _, ok, err := parseLine(l)
				if err != nil {
					t.Errorf("%s:%d: %v", name, line, err)
				}
				if !ok {
					// A comment; it explains the group if the group starts with it.
					if groupStart && strings.HasPrefix(l, "#") {
						groupHasComment = true
					}
					groupStart = false
					continue
				}
				groupStart = false
				if !groupHasComment {
					t.Errorf("%s:%d: %s is in a group without a comment saying why", name, line, n)
				}
				if prev, dup := seen[n]; dup {
					t.Errorf("%s:%d: %s already set on line %d", name, line, n, prev)
				}
				seen[n] = line
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
