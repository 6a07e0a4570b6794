// Package enginetest is the step contract as a table of cases that every
// engine runs (the host engine in CI, the Dagger engine by hand with a real
// engine): inputs read-only, exactly the step's environment, no network
// unless the step asks, and outputs exported byte for byte.
package enginetest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Case is one clause of the contract.
type Case struct {
	Name string
	// Step is run with one input, "src": a directory holding the file
	// "hello" ("hi\n").
	Step func(tc step.Toolchain) *step.Step
	// Check inspects the step's output directory and the input's.
	Check func(t *testing.T, s *step.Step, out, src string)
}

// perlDump writes a file of /out from a perl expression: perl is in every
// Debian root and, unlike a shell, adds nothing to the environment.
func perlDump(file, expr string) []string {
	return []string{"perl", "-e", `open(O, ">", "/out/` + file + `") or die "$!\n"; print O ` + expr + `;`}
}

// interfaces lists the network interfaces the step's own network
// namespace has (/proc/net/dev is per process, unlike /sys/class/net).
var interfaces = `join("\n", sort map { /^\s*([^:\s]+):/ ? $1 : () } do { open(N, "/proc/net/dev") or die; <N> }) . "\n"`

// Cases are the contract.
var Cases = []Case{
	{
		Name: "exact environment",
		Step: func(tc step.Toolchain) *step.Step {
			return &step.Step{Name: "env", Toolchain: tc, Env: map[string]string{"K3OS_X": "a b", "EMPTY": ""},
				Commands: [][]string{perlDump("env", `map { "$_=$ENV{$_}\n" } sort keys %ENV`)}, Outputs: []string{"env"}}
		},
		Check: func(t *testing.T, s *step.Step, out, _ string) {
			b, err := os.ReadFile(filepath.Join(out, "env"))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if want := s.EnvList(); !slices.Equal(got, want) {
				t.Errorf("the step saw the environment\n%s\nwant exactly\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		},
	},
	{
		Name: "no network unless asked",
		Step: func(tc step.Toolchain) *step.Step {
			return &step.Step{Name: "no-network", Toolchain: tc,
				Commands: [][]string{perlDump("interfaces", interfaces)}, Outputs: []string{"interfaces"}}
		},
		Check: func(t *testing.T, _ *step.Step, out, _ string) {
			if b, _ := os.ReadFile(filepath.Join(out, "interfaces")); string(b) != "lo\n" {
				t.Errorf("a step without Network has the interfaces %q, want only lo", b)
			}
		},
	},
	{
		Name: "network when asked",
		Step: func(tc step.Toolchain) *step.Step {
			return &step.Step{Name: "network", Toolchain: tc, Network: true,
				Commands: [][]string{perlDump("interfaces", interfaces)}, Outputs: []string{"interfaces"}}
		},
		Check: func(t *testing.T, _ *step.Step, out, _ string) {
			if b, _ := os.ReadFile(filepath.Join(out, "interfaces")); strings.TrimSpace(strings.ReplaceAll(string(b), "lo\n", "")) == "" {
				t.Errorf("a step with Network has the interfaces %q: nothing but loopback", b)
			}
		},
	},
	{
		Name: "inputs read-only",
		Step: func(tc step.Toolchain) *step.Step {
			return &step.Step{Name: "read-only", Toolchain: tc, Inputs: []step.Input{{Name: "src", Path: "src"}},
				Commands: [][]string{{"sh", "-c", `cat /in/src/hello > /out/read
if echo changed > /in/src/hello 2>/dev/null || touch /in/src/new 2>/dev/null; then echo writable; else echo read-only; fi > /out/verdict`}},
				Outputs: []string{"read", "verdict"}}
		},
		Check: func(t *testing.T, _ *step.Step, out, src string) {
			if b, _ := os.ReadFile(filepath.Join(out, "read")); string(b) != "hi\n" {
				t.Errorf("the step read %q from its input, want %q", b, "hi\n")
			}
			if b, _ := os.ReadFile(filepath.Join(out, "verdict")); string(b) != "read-only\n" {
				t.Errorf("the step could write to its input (%q)", b)
			}
			if b, _ := os.ReadFile(filepath.Join(src, "hello")); string(b) != "hi\n" {
				t.Errorf("the input on the host changed to %q", b)
			}
			if _, err := os.Stat(filepath.Join(src, "new")); err == nil {
				t.Error("the step created a file in its input on the host")
			}
		},
	},
	{
		Name: "outputs byte for byte",
		Step: func(tc step.Toolchain) *step.Step {
			return &step.Step{Name: "outputs", Toolchain: tc, Commands: [][]string{{"sh", "-euc", outputTree}},
				Outputs: []string{"tree", "top"}}
		},
		Check: func(t *testing.T, _ *step.Step, out, _ string) {
			want := t.TempDir()
			writeTree(t, want)
			for _, o := range []string{"tree", "top"} {
				got, err := run.TreeDigest(filepath.Join(out, o))
				if err != nil {
					t.Fatal(err)
				}
				w, _ := run.TreeDigest(filepath.Join(want, o))
				if got != w {
					t.Errorf("output %s: exported tree %s, want %s (names, modes, links, bytes)", o, got, w)
				}
			}
		},
	},
}

// outputTree makes in /out what writeTree makes on the host.
const outputTree = `mkdir -p /out/tree/sub
printf 'one\n' > /out/tree/plain
printf '#!/bin/sh\n' > /out/tree/sub/exec && chmod 0755 /out/tree/sub/exec
printf 'secret' > /out/tree/private && chmod 0600 /out/tree/private
: > /out/tree/empty
i=0; while [ $i -lt 256 ]; do printf "\\$(printf %o $i)"; i=$((i+1)); done > /out/tree/bytes
ln -s sub/exec /out/tree/link
chmod 0750 /out/tree/sub
printf 'top\n' > /out/top`

func writeTree(t *testing.T, root string) {
	t.Helper()
	d := filepath.Join(root, "tree")
	var all bytes.Buffer
	for i := range 256 {
		all.WriteByte(byte(i))
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"plain", []byte("one\n"), 0o644}, {"sub/exec", []byte("#!/bin/sh\n"), 0o755},
		{"private", []byte("secret"), 0o600}, {"empty", nil, 0o644}, {"bytes", all.Bytes(), 0o644},
	} {
		p := filepath.Join(d, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, f.mode)
	}
	os.Symlink("sub/exec", filepath.Join(d, "link"))
	os.Chmod(filepath.Join(d, "sub"), 0o750)
	os.Chmod(d, 0o755)
	os.WriteFile(filepath.Join(root, "top"), []byte("top\n"), 0o644)
}

// Run runs every case on engine e with toolchain tc.
func Run(t *testing.T, e step.Engine, tc step.Toolchain) {
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) {
			project := t.TempDir()
			src := filepath.Join(project, "src")
			os.MkdirAll(src, 0o755)
			if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			s := c.Step(tc)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			inputs := map[string]string{}
			for _, in := range s.Inputs {
				inputs[in.Name] = filepath.Join(project, in.Path)
			}
			out := t.TempDir()
			var log bytes.Buffer
			if err := e.Run(context.Background(), s, inputs, out, &log); err != nil {
				t.Fatalf("%s: %v\n%s", e.Name(), err, log.String())
			}
			c.Check(t, s, out, src)
		})
	}
}
