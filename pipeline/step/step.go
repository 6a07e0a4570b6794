// Package step is the pipeline's step model: what a step is (toolchain,
// inputs, environment, commands, outputs), its content key, and the
// contract an engine fulfils to run one. It imports nothing of the rest of
// the project, so that engines depend on this package alone.
package step

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
)

// Paths inside a step's environment, the same under every engine.
const (
	InDir    = "/in"    // inputs, read-only: /in/<name>
	OutDir   = "/out"   // outputs: the step writes here
	CacheDir = "/cache" // cache volumes: /cache/<name>
	WorkDir  = "/work"  // scratch, empty at start
)

// Toolchain is the Debian root a step runs in: its suites, the
// architecture of its tools, and its packages. The host engine builds it
// with mmdebstrap and enters it with bubblewrap; the Dagger engine uses a
// container of the same suite with the same packages.
type Toolchain struct {
	// Suites are the Debian suites it draws from, the release first
	// (e.g. trixie, trixie-backports).
	Suites   []string `json:"suites"`
	Arch     string   `json:"arch"`
	Packages []string `json:"packages"`
}

// Key identifies a toolchain's content by its definition.
func (t Toolchain) Key() string {
	pk := slices.Sorted(slices.Values(t.Packages))
	return t.Suites[0] + "-" + t.Arch + "-" + Digest(strings.Join(t.Suites, " ") + "\n" + strings.Join(pk, "\n"))[:12]
}

// ToolchainLock maps a toolchain's key to the exact version of each of its
// packages, so that every engine builds the same root for it.
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
	slices.Sort(out) // the order names a tools root: keep it
	return out
}

// Input is something a step reads, mounted read-only at /in/<Name>. It is
// exactly one of: a path of the source tree, another step's output, or a
// set of pinned downloads.
type Input struct {
	Name string `json:"name"`
	// Path is a file or directory on the host (relative to the project).
	Path string `json:"path,omitempty"`
	// Include limits a Path directory to these entries (files or
	// directories below it, as slash-separated relative paths).
	Include []string `json:"include,omitempty"`
	// Step is another step whose /out is mounted here.
	Step *Step `json:"-"`
	// Downloads are fetched once, checked against their sha256 and
	// mounted as one directory, each file under its Name.
	Downloads []Download `json:"downloads,omitempty"`
	// Hint is added to an error fetching the input: what else to do.
	Hint string `json:"-"`
}

// Download is a pinned file from the network, or from the build machine
// (a file: URL, relative to the project).
type Download struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Name   string `json:"name"`
}

// Step is one unit of the pipeline, defined once and run by any engine. It
// runs Commands in its Toolchain with its Inputs under /in, its caches under
// /cache, scratch space in /work (the working directory), and leaves its
// results in /out. Steps see no network unless Network says so.
type Step struct {
	Name      string            `json:"name"`
	Toolchain Toolchain         `json:"toolchain"`
	Inputs    []Input           `json:"inputs"`
	Env       map[string]string `json:"env"`
	Commands  [][]string        `json:"commands"`
	// Caches are named volumes that persist between runs (ccache, Go's build
	// cache); they speed a step up but never change its output.
	Caches []string `json:"caches,omitempty"`
	// Outputs are the paths under /out the step must produce.
	Outputs []string `json:"outputs"`
	// Network lets the step reach the package mirror.
	Network bool `json:"network,omitempty"`
	// Privileged steps may mount and chroot (mmdebstrap, losetup).
	Privileged bool `json:"privileged,omitempty"`
	// Check, when set, verifies the step's output once it is built (Go
	// code on the build machine, under every engine); a failure stops the
	// build and the output is not cached.
	Check func(outDir string) error `json:"-"`
}

// SourceDateEpoch is the fixed time every step builds with, for
// reproducible outputs (2026-01-01T00:00:00Z); it is in every step's Env.
const SourceDateEpoch = "1767225600"

// Environ is the step's full environment, the same under every engine.
func (s *Step) Environ() map[string]string {
	env := map[string]string{
		"PATH":              "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":              WorkDir,
		"PWD":               WorkDir, // the working directory, as a shell would say
		"LC_ALL":            "C.UTF-8",
		"TZ":                "UTC",
		"SOURCE_DATE_EPOCH": SourceDateEpoch,
	}
	maps.Copy(env, s.Env)
	return env
}

// EnvList returns Environ as sorted KEY=VALUE strings.
func (s *Step) EnvList() []string {
	env := s.Environ()
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Validate checks a step definition before anything runs.
func (s *Step) Validate() error {
	if s.Name == "" || strings.ContainsAny(s.Name, "/ @") {
		return fmt.Errorf("step name %q: use letters, digits and '-'", s.Name)
	}
	if len(s.Toolchain.Suites) == 0 || s.Toolchain.Arch == "" {
		return fmt.Errorf("step %s: toolchain needs a suite and an arch", s.Name)
	}
	seen := map[string]bool{}
	for _, in := range s.Inputs {
		n := 0
		for _, set := range []bool{in.Path != "", in.Step != nil, len(in.Downloads) > 0} {
			if set {
				n++
			}
		}
		if n != 1 || in.Name == "" || strings.Contains(in.Name, "/") || seen[in.Name] {
			return fmt.Errorf("step %s: input %q must have a unique name and exactly one of path, step, downloads", s.Name, in.Name)
		}
		for _, d := range in.Downloads {
			if len(d.SHA256) != 64 || d.Name == "" || strings.Contains(d.Name, "/") {
				return fmt.Errorf("step %s: input %s: download %s needs a sha256 and a file name", s.Name, in.Name, d.URL)
			}
		}
		seen[in.Name] = true
	}
	if len(s.Commands) == 0 || len(s.Outputs) == 0 {
		return fmt.Errorf("step %s: needs commands and outputs", s.Name)
	}
	for _, o := range s.Outputs {
		if path.IsAbs(o) || strings.HasPrefix(path.Clean(o), "..") {
			return fmt.Errorf("step %s: output %q must be relative to %s", s.Name, o, OutDir)
		}
	}
	return nil
}

// Definition is the canonical encoding of what the step does, apart from
// the content of its path inputs: the steps it reads are named by their
// own IDs, downloads by their checksums.
func (s *Step) Definition() []byte {
	type inputDef struct {
		Input
		Step string `json:"step,omitempty"`
	}
	def := struct {
		*Step
		Inputs []inputDef `json:"inputs"`
		Env    []string   `json:"env"`
	}{Step: s, Env: s.EnvList()}
	for _, in := range s.Inputs {
		d := inputDef{Input: in}
		if in.Step != nil {
			d.Step = in.Step.ID()
		}
		// Where a pinned file comes from does not change what it is.
		d.Downloads = nil
		for _, dl := range in.Downloads {
			d.Downloads = append(d.Downloads, Download{SHA256: dl.SHA256, Name: dl.Name})
		}
		def.Inputs = append(def.Inputs, d)
	}
	b, err := json.Marshal(def)
	if err != nil {
		panic(err) // only plain data: cannot fail
	}
	return b
}

// ID is the step's identity by content: two steps with the same ID do the
// same work on the same kinds of inputs. (The cache key adds the content
// of the path inputs and the engine.)
func (s *Step) ID() string {
	return Digest(string(s.Definition()))[:32]
}

// Graph returns s and every step it depends on, each once, dependencies
// first.
func (s *Step) Graph() []*Step {
	var out []*Step
	seen := map[string]bool{}
	var walk func(*Step)
	walk = func(st *Step) {
		id := st.ID()
		if seen[id] {
			return
		}
		seen[id] = true
		for _, in := range st.Inputs {
			if in.Step != nil {
				walk(in.Step)
			}
		}
		out = append(out, st)
	}
	walk(s)
	return out
}

// Digest is the hex sha256 of a string.
func Digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// FileDigest returns the hex sha256 of a file.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Engine runs one step. The inputs are resolved to host paths (files or
// directories) by the runner; the engine leaves the step's /out in outDir,
// which exists and is empty, and writes the step's output to log.
//
// The contract every engine keeps (package enginetest checks it): the
// step sees its inputs read-only, exactly the environment EnvList gives,
// no network unless Network is set, and what it leaves in /out arrives in
// outDir byte for byte, with its modes and links.
type Engine interface {
	Name() string
	Run(ctx context.Context, s *Step, inputs map[string]string, outDir string, log io.Writer) error
}

// ShortCommand renders a command for a one-line message.
func ShortCommand(cmd []string) string {
	s := strings.Join(cmd, " ")
	if first, _, multi := strings.Cut(s, "\n"); multi {
		s = first + " ..."
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
