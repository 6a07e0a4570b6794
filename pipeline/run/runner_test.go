package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// copyEngine runs a step by concatenating its inputs into /out/all: enough
// to observe what the Runner hands an engine and when it calls it.
type copyEngine struct{ runs int }

func (e *copyEngine) Name() string { return "copy" }

func (e *copyEngine) Run(ctx context.Context, s *step.Step, inputs map[string]string, out string, log io.Writer) error {
	e.runs++
	var all []byte
	for _, in := range s.Inputs {
		p := inputs[in.Name]
		switch {
		case len(in.Downloads) > 0:
			p = filepath.Join(p, in.Downloads[0].Name)
		case in.Step != nil:
			p = filepath.Join(p, "all")
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		all = append(all, b...)
	}
	return os.WriteFile(filepath.Join(out, "all"), all, 0o644)
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

var testToolchain = step.Toolchain{Suites: []string{"trixie"}, Arch: "amd64", Packages: []string{"coreutils"}}

func testStep(inputs ...step.Input) *step.Step {
	return &step.Step{Name: "t", Toolchain: testToolchain, Inputs: inputs, Commands: [][]string{{"true"}}, Outputs: []string{"all"}}
}

func TestRunnerCache(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a.txt")
	os.WriteFile(src, []byte("one"), 0o644)
	e := &copyEngine{}
	log := logrus.New()
	log.SetOutput(io.Discard)
	newRunner := func() *Runner { return &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: log} }
	s := testStep(step.Input{Name: "a", Path: "a.txt"})
	first, err := newRunner().Build(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-24 * time.Hour)
	os.Chtimes(first, long, long)
	// Same content, new mtime: cached, and the hit marks the output used.
	os.Chtimes(src, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	out, err := newRunner().Build(context.Background(), s)
	if err != nil || e.runs != 1 {
		t.Fatalf("runs = %d, err %v; want a cache hit", e.runs, err)
	}
	if info, _ := os.Stat(out); time.Since(info.ModTime()) > time.Hour {
		t.Errorf("a cache hit left the output's last use at %s", info.ModTime())
	}
	// Changed content: run again.
	os.WriteFile(src, []byte("two"), 0o644)
	out2, err := newRunner().Build(context.Background(), s)
	if err != nil || e.runs != 2 || out2 == out {
		t.Fatalf("runs = %d, err %v; want a rebuild into a new directory", e.runs, err)
	}
	// A changed definition (env) is a different step.
	s.Env = map[string]string{"X": "1"}
	if _, err := newRunner().Build(context.Background(), s); err != nil || e.runs != 3 {
		t.Fatalf("runs = %d, err %v; want a rebuild", e.runs, err)
	}
}

func TestRunnerDependsAndDownloads(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "blob"), []byte("payload"), 0o644)
	sum := sha256.Sum256([]byte("payload"))
	e := &copyEngine{}
	r := &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: quietLog()}
	dl := testStep(step.Input{Name: "d", Downloads: []step.Download{{Name: "blob", URL: "file:blob", SHA256: hex.EncodeToString(sum[:])}}})
	dl.Name = "dl"
	top := testStep(step.Input{Name: "dep", Step: dl})
	top.Name = "top"
	out, err := r.Build(context.Background(), top)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "all")); string(b) != "payload" || e.runs != 2 {
		t.Errorf("the step on top of the download step read %q after %d runs", b, e.runs)
	}
	bad := testStep(step.Input{Name: "d", Downloads: []step.Download{{Name: "blob", URL: "file:blob", SHA256: strings.Repeat("0", 64)}}})
	bad.Name = "bad"
	if _, err := r.Build(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "the lock says") {
		t.Errorf("checksum mismatch: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "downloads", strings.Repeat("0", 64))); err == nil {
		t.Error("a file with the wrong checksum was kept")
	}
}

// Prefetch fetches every download of the steps to build before any runs:
// a bad one fails at once, with its input's hint, and nothing was run.
func TestPrefetch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "blob"), []byte("payload"), 0o644)
	sum := sha256.Sum256([]byte("payload"))
	e := &copyEngine{}
	r := &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: quietLog()}
	good := testStep(step.Input{Name: "d", Downloads: []step.Download{{Name: "blob", URL: "file:blob", SHA256: hex.EncodeToString(sum[:])}}})
	good.Name = "good"
	missing := testStep(step.Input{Name: "k3s", Downloads: []step.Download{{Name: "k3s", URL: "http://127.0.0.1:1/k3s-arm64", SHA256: strings.Repeat("1", 64)}},
		Hint: "build offline with K3S=file:PATH"})
	missing.Name = "missing"
	top := testStep(step.Input{Name: "a", Step: good}, step.Input{Name: "b", Step: missing})
	start := time.Now()
	err := r.Prefetch(context.Background(), top)
	if err == nil || !strings.Contains(err.Error(), "K3S=file:PATH") || !strings.Contains(err.Error(), "step missing: input k3s") {
		t.Fatalf("Prefetch = %v, want the failed download with its hint", err)
	}
	if took := time.Since(start); took > 10*time.Second || e.runs != 0 {
		t.Errorf("Prefetch took %s and ran %d steps", took, e.runs)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "downloads", hex.EncodeToString(sum[:]))); err != nil {
		t.Error("the good download was not fetched")
	}
	// A cached step needs none of its downloads.
	if _, err := r.Build(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "cache", "downloads"))
	if err := r.Prefetch(context.Background(), good); err != nil {
		t.Errorf("Prefetch of a cached step: %v", err)
	}
}

// Steps are known by their content: two definitions alike are one step,
// whatever the pointer; a different input is a different step.
func TestRunnerKeyedByContent(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
		os.WriteFile(filepath.Join(dir, d, "f"), []byte(d), 0o644)
	}
	e := &copyEngine{}
	r := &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: quietLog()}
	mk := func(path string) *step.Step {
		s := testStep(step.Input{Name: "in", Path: path})
		s.Commands = [][]string{{"cat"}}
		return s
	}
	if mk("a").ID() != mk("a").ID() || mk("a").ID() == mk("b").ID() {
		t.Fatal("IDs do not follow the definition")
	}
	ka, _ := r.Key(mk("a"))
	kb, _ := r.Key(mk("b"))
	if ka == kb {
		t.Error("steps on different inputs share a key")
	}
}

func TestStepValidate(t *testing.T) {
	s := testStep(step.Input{Name: "a", Path: "x", Downloads: []step.Download{{Name: "u", URL: "u", SHA256: strings.Repeat("0", 64)}}})
	if err := s.Validate(); err == nil {
		t.Error("an input with two sources passed")
	}
	s = testStep()
	s.Outputs = []string{"/abs"}
	if err := s.Validate(); err == nil {
		t.Error("an absolute output passed")
	}
}

// A step's check runs on its output and a failure stops the build.
func TestRunnerCheck(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644)
	r := &Runner{Engine: &copyEngine{}, Cache: filepath.Join(dir, "cache"), Project: dir, Log: quietLog()}
	s := testStep(step.Input{Name: "a", Path: "a"})
	s.Check = func(out string) error { return errors.New("CONFIG_MEMCG: required y") }
	if _, err := r.Build(context.Background(), s); err == nil || !strings.Contains(err.Error(), "CONFIG_MEMCG") {
		t.Errorf("Build = %v, want the check's error", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "cache", "steps", "t@*")); len(m) != 0 {
		t.Errorf("a checked-out output was cached: %v", m)
	}
}

func TestTailWriterStripsColours(t *testing.T) {
	var w tailWriter
	w.Write([]byte("\x1b[95m38  : \x1b[0mContainer.\x1b[1mdirectory\x1b[0m DONE\nlast "))
	w.Write([]byte("line\n"))
	if got := w.String(); got != "38  : Container.directory DONE\nlast line" {
		t.Errorf("tail = %q", got)
	}
}

// A path input edited after the runner keyed the step is not what the
// step runs on: the build stops instead of caching a mislabelled output.
func TestRunnerSnapshotsInputs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a.txt")
	os.WriteFile(src, []byte("one"), 0o644)
	e := &copyEngine{}
	r := &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: quietLog()}
	s := testStep(step.Input{Name: "a", Path: "a.txt"})
	if _, err := r.Key(s); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(src, []byte("two"), 0o644)
	if _, err := r.Build(context.Background(), s); err == nil || !strings.Contains(err.Error(), "changed after the build read it") {
		t.Errorf("Build = %v, want the edit found", err)
	}
	if e.runs != 0 {
		t.Error("the step ran on an input its key does not describe")
	}
}
