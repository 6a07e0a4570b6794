package settings

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadDefaults(t *testing.T) {
	project := t.TempDir()
	os.WriteFile(filepath.Join(project, "VERSION"), []byte("1.2.3\n"), 0o644)
	s, err := Load(project, env(map[string]string{"HOME": "/home/u"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kernel != KernelPi || s.K3s != K3sRelease || s.Engine != "auto" || s.ConfigDir != "config" ||
		s.Version != "1.2.3" || s.Mirror != "http://deb.debian.org/debian" || s.Cache != "/home/u/.cache/k3os-rpi4" || s.GoEnv != nil {
		t.Errorf("defaults: %+v", s)
	}
	test, err := Load(project, env(map[string]string{"HOME": "/home/u"}), true)
	if err != nil || test.K3s != K3sNone || test.Kernel != KernelPi {
		t.Errorf("test defaults: %+v %v", test, err)
	}
	s, err = Load(project, env(map[string]string{"XDG_CACHE_HOME": "/c", "K3S": "file:/k3s", "GOPROXY": "off",
		"K3OS_VMTEST_CASES": "a, b", "CI": "true", "DEBIAN_MIRROR": "http://m/debian/", "VERSION": "2.0"}), true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Cache != "/c/k3os-rpi4" || s.K3s != "file:/k3s" || s.GoEnv["GOPROXY"] != "off" || len(s.VMTestCases) != 2 ||
		!s.Plain || s.Mirror != "http://m/debian" || s.Version != "2.0" {
		t.Errorf("set: %+v", s)
	}
}

// A wrong value fails before any work, naming the valid ones; every
// wrong value at once.
func TestLoadRejects(t *testing.T) {
	project := t.TempDir()
	os.WriteFile(filepath.Join(project, "VERSION"), []byte("1\n"), 0o644)
	_, err := Load(project, env(map[string]string{"HOME": "/h", "KERNEL": "sorce", "ENGINE": "docker", "K3S": "file:", "DEBIAN_MIRROR": "ftp://x"}), false)
	if err == nil {
		t.Fatal("bad values passed")
	}
	for _, want := range []string{"KERNEL=sorce: not a valid value; use one of: pi, full, debian, reduced", "ENGINE=docker", "K3S=file:: not a valid value; use one of: release, none, file:PATH", "DEBIAN_MIRROR=ftp://x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Load(t.TempDir(), env(map[string]string{"HOME": "/h"}), false); err == nil || !strings.Contains(err.Error(), "VERSION file") {
		t.Errorf("no VERSION file: %v", err)
	}
	if _, err := Load(project, env(map[string]string{"HOME": "/h", "VERSION": "1 2"}), false); err == nil {
		t.Error("a version with a space passed")
	}
}

// The README's option table is the settings table.
func TestReadmeTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	Markdown(&want)
	_, rest, ok := strings.Cut(string(b), "<!-- settings: go tool mage settings -->\n")
	got, _, ok2 := strings.Cut(rest, "<!-- /settings -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no settings table between <!-- settings: go tool mage settings --> and <!-- /settings -->")
	}
	if got != want.String() {
		t.Errorf("README.md's settings table is not the table's: replace it with the output of go tool mage settings\n--- README:\n%s--- table:\n%s", got, want.String())
	}
}

// envCalls are the calls that read or change the environment.
var envCalls = map[string]bool{"Getenv": true, "LookupEnv": true, "Setenv": true, "Unsetenv": true, "Environ": true,
	"ExpandEnv": true, "UserHomeDir": true, "UserCacheDir": true, "Clearenv": true}

// allowed are the other places that may, and why.
var allowed = map[string]string{
	"agent/boot/linux.go":    "the initramfs hands the kernel's environment to the root's init unchanged",
	"cmd/k3os-agent/k3os.go": "k3os status and health run themselves again under sudo, in the user's environment",
}

// Only this package reads the environment (the targets call Load with
// os.LookupEnv); every other package gets values handed down.
func TestNoOtherPackageReadsTheEnvironment(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		if d.IsDir() && (rel == "settings" || rel == "magefiles" || strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "os" && envCalls[sel.Sel.Name] && allowed[filepath.ToSlash(rel)] == "" {
				t.Errorf("%s: os.%s: read the setting through the settings table and pass it down", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
