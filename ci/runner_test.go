package ci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// copyEngine runs a step by concatenating its inputs into /out/all: enough
// to observe what the Runner hands an engine and when it calls it.
type copyEngine struct{ runs int }

func (e *copyEngine) Name() string { return "copy" }

func (e *copyEngine) Run(ctx context.Context, s *Step, inputs map[string]string, out string, log io.Writer) error {
	e.runs++
	var all []byte
	for _, in := range s.Inputs {
		b, err := os.ReadFile(inputs[in.Name])
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

func testStep(inputs ...Input) *Step {
	return &Step{Name: "t", Toolchain: GoToolchain, Inputs: inputs, Commands: [][]string{{"true"}}, Outputs: []string{"all"}}
}

func TestRunnerCache(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a.txt")
	os.WriteFile(src, []byte("one"), 0o644)
	e := &copyEngine{}
	log := logrus.New()
	log.SetOutput(io.Discard)
	newRunner := func() *Runner { return &Runner{Engine: e, Cache: filepath.Join(dir, "cache"), Project: dir, Log: log} }
	s := testStep(Input{Name: "a", Path: "a.txt"})
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
	log := logrus.New()
	log.SetOutput(io.Discard)
	r := &Runner{Engine: &copyEngine{}, Cache: filepath.Join(dir, "cache"), Project: dir, Log: log}
	dl := testStep(Input{Name: "d", Download: &Download{URL: "file:blob", SHA256: hex.EncodeToString(sum[:])}})
	dl.Name = "dl"
	out, err := r.Build(context.Background(), dl)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "all"))
	if string(b) != "payload" {
		t.Errorf("download step read %q", b)
	}
	bad := testStep(Input{Name: "d", Download: &Download{URL: "file:blob", SHA256: strings.Repeat("0", 64)}})
	bad.Name = "bad"
	if _, err := r.Build(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "the lock says") {
		t.Errorf("checksum mismatch: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "downloads", strings.Repeat("0", 64))); err == nil {
		t.Error("a file with the wrong checksum was kept")
	}
}

func TestStepValidate(t *testing.T) {
	s := testStep(Input{Name: "a", Path: "x", Download: &Download{URL: "u", SHA256: strings.Repeat("0", 64)}})
	if err := s.Validate(); err == nil {
		t.Error("an input with two sources passed")
	}
	s = testStep()
	s.Outputs = []string{"/abs"}
	if err := s.Validate(); err == nil {
		t.Error("an absolute output passed")
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
