package pipeline

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
)

// mageTargets lists the targets the magefiles define, as mage names them
// (lowercase; namespace:method).
func mageTargets(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, _ := filepath.Glob("../magefiles/*.go")
	targets := map[string]bool{}
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !fn.Name.IsExported() {
				continue
			}
			name := strings.ToLower(fn.Name.Name)
			if fn.Recv != nil {
				recv := fn.Recv.List[0].Type.(*ast.Ident).Name
				name = strings.ToLower(recv) + ":" + name
			}
			targets[name] = true
		}
	}
	if len(targets) == 0 {
		t.Fatal("no mage targets found")
	}
	return targets
}

var mageCall = regexp.MustCompile(`go tool mage ([a-zA-Z:]+)`)

// Every workflow parses, and every `go tool mage X` it runs is a target.
func TestWorkflows(t *testing.T) {
	targets := mageTargets(t)
	files, _ := filepath.Glob("../.github/workflows/*.yml")
	tmpl, _ := filepath.Glob("../docs/cluster-template/.github/workflows/*.yml")
	files = append(files, tmpl...)
	if len(files) < 3 {
		t.Fatalf("workflows: %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			On   any `yaml:"on"`
			Jobs map[string]struct {
				RunsOn string            `yaml:"runs-on"`
				Env    map[string]string `yaml:"env"`
				Steps  []struct {
					Run  string `yaml:"run"`
					Uses string `yaml:"uses"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(b, &wf); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if wf.On == nil || len(wf.Jobs) == 0 {
			t.Errorf("%s: no triggers or no jobs", f)
		}
		calls := 0
		for name, job := range wf.Jobs {
			if job.RunsOn == "" {
				t.Errorf("%s: job %s has no runs-on", f, name)
			}
			if e := job.Env["ENGINE"]; e != "" && e != "dagger" && e != "host" && e != "auto" {
				t.Errorf("%s: ENGINE=%s", f, e)
			}
			if k := job.Env["KERNEL"]; k != "" && !slices.Contains(plan.KernelFlavours, k) {
				t.Errorf("%s: KERNEL=%s is no kernel flavour", f, k)
			}
			for _, s := range job.Steps {
				if s.Run == "" && s.Uses == "" {
					t.Errorf("%s: job %s has a step with neither run nor uses", f, name)
				}
				for _, m := range mageCall.FindAllStringSubmatch(s.Run, -1) {
					calls++
					if !targets[strings.ToLower(m[1])] {
						t.Errorf("%s: runs go tool mage %s, which is no target", f, m[1])
					}
				}
			}
		}
		if calls == 0 {
			t.Errorf("%s: runs no mage target", f)
		}
		// A public release carries no cluster: no example token, no
		// example keys, nobody's configs.
		if filepath.Base(f) == "release.yml" {
			for name, job := range wf.Jobs {
				if job.Env["CONFIG_DIR"] != "none" {
					t.Errorf("%s: job %s builds its image with CONFIG_DIR=%q, not none", f, name, job.Env["CONFIG_DIR"])
				}
			}
		}
	}
}
