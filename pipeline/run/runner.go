// Package run builds steps: it orders them by their inputs, fetches
// pinned downloads, keeps every step's output in a content-addressed cache,
// shows progress, and prunes the cache. The engine that runs a step is
// handed in; this package knows none.
package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Runner builds steps with an engine, after the steps they depend on, and
// keeps each step's output in a content-addressed cache: the key is the
// step's definition, the engine, and the digests of its inputs. An
// unchanged step is not run again.
type Runner struct {
	Engine step.Engine
	// Cache is the cache root (steps/, downloads/, logs/).
	Cache string
	// Project is the directory relative input paths start from.
	Project string
	Log     *logrus.Logger
	// Progress receives live output of running steps (a terminal), or nil.
	Progress io.Writer

	mu      sync.Mutex
	keys    map[string]string // step ID -> cache key
	digests map[string]string // step ID + "/" + input name -> the digest in its key
	done    map[string]result // step ID -> its build
}

type result struct {
	out string
	err error
}

// Key returns a step's cache key, without building anything: a step
// input counts by its own key, a path by its content, downloads by their
// checksums.
func (r *Runner) Key(s *step.Step) (string, error) {
	id := s.ID()
	r.mu.Lock()
	k, ok := r.keys[id]
	r.mu.Unlock()
	if ok {
		return k, nil
	}
	h := sha256.New()
	fmt.Fprintf(h, "engine %s\n", r.Engine.Name())
	h.Write(s.Definition())
	digests := map[string]string{}
	for _, in := range s.Inputs {
		d, err := r.inputDigest(in)
		if err != nil {
			return "", fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)
		}
		fmt.Fprintf(h, "\ninput %s %s", in.Name, d)
		digests[id+"/"+in.Name] = d
	}
	k = hex.EncodeToString(h.Sum(nil))[:32]
	r.mu.Lock()
	if r.keys == nil {
		r.keys, r.digests = map[string]string{}, map[string]string{}
	}
	r.keys[id] = k
	maps.Copy(r.digests, digests)
	r.mu.Unlock()
	return k, nil
}

func (r *Runner) inputDigest(in step.Input) (string, error) {
	switch {
	case len(in.Downloads) > 0:
		return step.Digest(downloadSetList(in.Downloads)), nil
	case in.Step != nil:
		return r.Key(in.Step)
	case len(in.Include) > 0:
		h := sha256.New()
		for _, inc := range in.Include {
			d, err := TreeDigest(filepath.Join(r.path(in.Path), inc))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s %s\n", inc, d)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	default:
		return TreeDigest(r.path(in.Path))
	}
}

func (r *Runner) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.Project, p)
}

// outDir is where a step's output is cached: its name and engine (what
// PruneSteps keeps one of), then its key.
func (r *Runner) outDir(s *step.Step, key string) string {
	return filepath.Join(r.Cache, "steps", s.Name+"@"+r.Engine.Name()+"-"+key)
}

// Cached tells whether a step's output is in the cache.
func (r *Runner) Cached(s *step.Step) (bool, error) {
	key, err := r.Key(s)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(r.outDir(s, key))
	return err == nil, nil
}

// Give moves the cached outputs of steps (and of the steps they depend
// on) into dst's cache, where dst has none: a benchmark's cold build, kept.
// Both runners must be of one engine.
func (r *Runner) Give(dst *Runner, steps ...*step.Step) error {
	if r.Engine.Name() != dst.Engine.Name() {
		return fmt.Errorf("outputs of the %s engine cannot serve the %s engine", r.Engine.Name(), dst.Engine.Name())
	}
	for _, top := range steps {
		for _, s := range top.Graph() {
			key, err := r.Key(s)
			if err != nil {
				return err
			}
			from, to := r.outDir(s, key), dst.outDir(s, key)
			if _, err := os.Stat(from); err != nil {
				continue
			}
			if _, err := os.Stat(to); err == nil {
				continue
			}
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				return err
			}
			if err := os.Rename(from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// Build runs a step (and, first, the steps it depends on) unless its
// output is cached, and returns the directory holding its /out.
func (r *Runner) Build(ctx context.Context, s *step.Step) (string, error) {
	res := r.build(ctx, s)
	return res.out, res.err
}

func (r *Runner) build(ctx context.Context, s *step.Step) result {
	id := s.ID()
	r.mu.Lock()
	if res, ok := r.done[id]; ok {
		r.mu.Unlock()
		return res
	}
	r.mu.Unlock()
	res := r.run(ctx, s)
	r.mu.Lock()
	if r.done == nil {
		r.done = map[string]result{}
	}
	r.done[id] = res
	r.mu.Unlock()
	return res
}

func (r *Runner) run(ctx context.Context, s *step.Step) result {
	if err := s.Validate(); err != nil {
		return result{err: err}
	}
	key, err := r.Key(s)
	if err != nil {
		return result{err: err}
	}
	out := r.outDir(s, key)
	log := r.Log.WithFields(logrus.Fields{"step": s.Name, "engine": r.Engine.Name()})
	if _, err := os.Stat(out); err == nil {
		log.WithField("key", key).Info("cached")
		now := time.Now()
		os.Chtimes(out, now, now) // last use, for PruneSteps
		return result{out: out}
	}
	// 0700: outputs hold secrets (the images carry the nodes' configs).
	if err := os.MkdirAll(filepath.Join(r.Cache, "steps"), 0o700); err != nil {
		return result{err: err}
	}
	tmp, err := os.MkdirTemp(filepath.Join(r.Cache, "steps"), ".tmp-"+s.Name+"-")
	if err != nil {
		return result{err: err}
	}
	defer os.RemoveAll(tmp)
	inputs := map[string]string{}
	for _, in := range s.Inputs {
		switch {
		case in.Step != nil:
			res := r.build(ctx, in.Step)
			if res.err != nil {
				return res
			}
			inputs[in.Name] = res.out
		case len(in.Downloads) > 0:
			p, err := r.downloadSet(ctx, in.Downloads)
			if err != nil {
				return result{err: inputError(s, in, err)}
			}
			inputs[in.Name] = p
		default:
			r.mu.Lock()
			want := r.digests[s.ID()+"/"+in.Name]
			r.mu.Unlock()
			p, err := r.snapshot(in, want, filepath.Join(tmp+".in", in.Name))
			if err != nil {
				return result{err: fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)}
			}
			inputs[in.Name] = p
		}
	}
	defer os.RemoveAll(tmp + ".in")
	logPath := filepath.Join(r.Cache, "logs", s.Name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return result{err: err}
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{err: err}
	}
	defer logFile.Close()
	log.WithField("key", key).Info("running")
	start := time.Now()
	tail := &tailWriter{}
	w := io.MultiWriter(logFile, tail)
	stop := r.progress(s.Name, start, tail)
	err = r.Engine.Run(ctx, s, inputs, tmp, w)
	stop()
	if err != nil {
		return result{err: fmt.Errorf("step %s failed after %s: %w\n--- last lines of %s:\n%s", s.Name,
			time.Since(start).Round(time.Second), err, logPath, tail.String())}
	}
	for _, o := range s.Outputs {
		if _, err := os.Lstat(filepath.Join(tmp, o)); err != nil {
			return result{err: fmt.Errorf("step %s: declared output %s was not produced (log: %s)", s.Name, o, logPath)}
		}
	}
	if s.Check != nil {
		if err := s.Check(tmp); err != nil {
			return result{err: fmt.Errorf("step %s: check failed:\n%w", s.Name, err)}
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return result{err: err}
	}
	// A step's last line is its report (a size, a count): show it.
	log.WithFields(logrus.Fields{"took": time.Since(start).Round(100 * time.Millisecond).String(), "said": tail.Last()}).Info("done")
	return result{out: out}
}

// snapshot copies a path input for the step to run on: a file edited
// while a long step runs must not reach it, and what it reads must be what
// its key was made of.
func (r *Runner) snapshot(in step.Input, want, dst string) (string, error) {
	var err error
	src := r.path(in.Path)
	if len(in.Include) == 0 {
		err = copyTree(src, dst)
	} else {
		for _, inc := range in.Include {
			if err = copyTree(filepath.Join(src, inc), filepath.Join(dst, inc)); err != nil {
				break
			}
		}
	}
	if err != nil {
		return "", err
	}
	got, err := r.inputDigest(step.Input{Path: dst, Include: in.Include})
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("%s changed after the build read it: run it again", in.Path)
	}
	return dst, nil
}

func inputError(s *step.Step, in step.Input, err error) error {
	err = fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)
	if in.Hint != "" {
		err = fmt.Errorf("%w; %s", err, in.Hint)
	}
	return err
}

// progress shows that a long step is alive: on a terminal a live line with
// the elapsed time and the step's last output line; elsewhere a plain line
// every 30 s.
func (r *Runner) progress(name string, start time.Time, tail *tailWriter) (stop func()) {
	done := make(chan struct{})
	every := 30 * time.Second
	if r.Progress != nil {
		every = time.Second
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if r.Progress != nil {
					fmt.Fprint(r.Progress, "\r\033[K")
				}
				return
			case <-t.C:
				el := time.Since(start).Round(time.Second)
				if r.Progress != nil {
					line := tail.Last()
					if len(line) > 100 {
						line = line[:100]
					}
					fmt.Fprintf(r.Progress, "\r\033[K%s %s  %s", name, el, line)
				} else {
					r.Log.WithFields(logrus.Fields{"step": name, "elapsed": el.String()}).Info("still running: " + tail.Last())
				}
			}
		}
	}()
	return func() { close(done) }
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// tailWriter keeps the last lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	lines []string
	part  string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Terminal colours (Dagger's progress) are noise in a log line.
	s := t.part + ansi.ReplaceAllString(strings.ReplaceAll(string(p), "\r", "\n"), "")
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		if strings.TrimSpace(l) != "" {
			t.lines = append(t.lines, l)
		}
	}
	if len(t.lines) > 40 {
		t.lines = t.lines[len(t.lines)-40:]
	}
	return len(p), nil
}

func (t *tailWriter) Last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return t.part
	}
	return t.lines[len(t.lines)-1]
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// Export copies files of a step's output into dist (or another directory)
// atomically: each lands under its final name only when complete.
func Export(outDir string, files map[string]string) error {
	for _, src := range slices.Sorted(maps.Keys(files)) {
		if err := atomicfile.Copy(filepath.Join(outDir, src), files[src]); err != nil {
			return err
		}
	}
	return nil
}

// NewLogger returns the build's structured logger: info lines for what
// starts and ends, debug lines with verbose set.
func NewLogger(verbose bool) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	if verbose {
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}
