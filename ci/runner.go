package ci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Runner builds steps with an engine, after the steps they depend on, and
// keeps each step's output in a content-addressed cache: the key is the
// step's definition, the engine, and the digests of its inputs. An
// unchanged step is not run again.
type Runner struct {
	Engine Engine
	// Cache is the cache root (steps/, downloads/, logs/).
	Cache string
	// Project is the directory relative input paths start from.
	Project string
	Log     *logrus.Logger
	// Progress receives live output of running steps (a terminal), or nil.
	Progress io.Writer

	mu   sync.Mutex
	done map[*Step]result
}

type result struct {
	key, out string
	err      error
}

// Key returns a step's cache key.
func (r *Runner) Key(ctx context.Context, s *Step) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "engine %s\n", r.Engine.Name())
	h.Write(s.Definition())
	for _, in := range s.Inputs {
		d, err := r.inputDigest(ctx, in)
		if err != nil {
			return "", fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)
		}
		fmt.Fprintf(h, "\ninput %s %s", in.Name, d)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

func (r *Runner) inputDigest(ctx context.Context, in Input) (string, error) {
	switch {
	case in.Download != nil:
		return in.Download.SHA256, nil
	case len(in.Downloads) > 0:
		return Digest(downloadSetList(in.Downloads)), nil
	case in.Step != nil:
		// A step's output is determined by its key.
		res := r.build(ctx, in.Step)
		return res.key, res.err
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

// Build runs a step (and, first, the steps it depends on) unless its
// output is cached, and returns the directory holding its /out.
func (r *Runner) Build(ctx context.Context, s *Step) (string, error) {
	res := r.build(ctx, s)
	return res.out, res.err
}

func (r *Runner) build(ctx context.Context, s *Step) result {
	r.mu.Lock()
	if r.done == nil {
		r.done = map[*Step]result{}
	}
	if res, ok := r.done[s]; ok {
		r.mu.Unlock()
		return res
	}
	r.mu.Unlock()
	res := r.run(ctx, s)
	r.mu.Lock()
	r.done[s] = res
	r.mu.Unlock()
	return res
}

func (r *Runner) run(ctx context.Context, s *Step) result {
	if err := s.Validate(); err != nil {
		return result{err: err}
	}
	key, err := r.Key(ctx, s)
	if err != nil {
		return result{err: err}
	}
	out := filepath.Join(r.Cache, "steps", s.Name+"-"+key)
	log := r.Log.WithFields(logrus.Fields{"step": s.Name, "engine": r.Engine.Name()})
	if _, err := os.Stat(out); err == nil {
		log.WithField("key", key).Info("cached")
		now := time.Now()
		os.Chtimes(out, now, now) // last use, for PruneSteps
		return result{key: key, out: out}
	}
	inputs := map[string]string{}
	for _, in := range s.Inputs {
		switch {
		case in.Step != nil:
			inputs[in.Name] = r.build(ctx, in.Step).out
		case in.Download != nil:
			p, err := r.download(ctx, *in.Download)
			if err != nil && in.Hint != "" {
				return result{err: fmt.Errorf("step %s: input %s: %w; %s", s.Name, in.Name, err, in.Hint)}
			} else if err != nil {
				return result{err: fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)}
			}
			inputs[in.Name] = p
		case len(in.Downloads) > 0:
			p, err := r.downloadSet(ctx, in.Downloads)
			if err != nil {
				return result{err: fmt.Errorf("step %s: input %s: %w", s.Name, in.Name, err)}
			}
			inputs[in.Name] = p
		default:
			inputs[in.Name] = r.path(in.Path)
		}
	}
	if err := os.MkdirAll(filepath.Join(r.Cache, "steps"), 0o755); err != nil {
		return result{err: err}
	}
	tmp, err := os.MkdirTemp(filepath.Join(r.Cache, "steps"), ".tmp-"+s.Name+"-")
	if err != nil {
		return result{err: err}
	}
	defer os.RemoveAll(tmp)
	logPath := filepath.Join(r.Cache, "logs", s.Name+".log")
	os.MkdirAll(filepath.Dir(logPath), 0o755)
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{err: err}
	}
	defer logFile.Close()
	log.WithField("key", key).Info("running")
	start := time.Now()
	tail := &tailWriter{}
	var w io.Writer = io.MultiWriter(logFile, tail)
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
	return result{key: key, out: out}
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

// download fetches a pinned file once into the cache and checks its sha256.
// A file: URL names a local file (offline builds).
func (r *Runner) download(ctx context.Context, d Download) (string, error) {
	dst := filepath.Join(r.Cache, "downloads", d.SHA256)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	var body io.ReadCloser
	if p, ok := strings.CutPrefix(d.URL, "file:"); ok {
		f, err := os.Open(r.path(p))
		if err != nil {
			return "", err
		}
		body = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("download %s: %w", d.URL, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return "", fmt.Errorf("download %s: %s", d.URL, resp.Status)
		}
		body = resp.Body
	}
	defer body.Close()
	f, err := os.CreateTemp(filepath.Dir(dst), ".dl-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		f.Close()
		return "", fmt.Errorf("download %s: %w", d.URL, err)
	}
	f.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != d.SHA256 {
		return "", fmt.Errorf("%s: sha256 is %s, the lock says %s", d.URL, got, d.SHA256)
	}
	return dst, os.Rename(f.Name(), dst)
}

func downloadSetList(ds []Download) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s %s\n", d.Name, d.SHA256)
	}
	return b.String()
}

// downloadSet fetches a set of pinned files (four at a time) and returns a
// directory holding each under its name, as hard links into the download
// cache.
func (r *Runner) downloadSet(ctx context.Context, ds []Download) (string, error) {
	dir := filepath.Join(r.Cache, "downloads", "sets", Digest(downloadSetList(ds))[:32])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	paths := make([]string, len(ds))
	errs := make([]error, len(ds))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			paths[i], errs[i] = r.download(ctx, d)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".set-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for i, d := range ds {
		if err := os.Link(paths[i], filepath.Join(tmp, d.Name)); err != nil {
			return "", err
		}
	}
	return dir, os.Rename(tmp, dir)
}

// TreeDigest hashes a file or a directory tree: names, modes, link targets
// and contents, in a fixed order. Modification times do not count.
func TreeDigest(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(rel), info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Write([]byte(t))
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		h.Write([]byte{0})
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist", root)
	}
	return hex.EncodeToString(h.Sum(nil)), err
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
		if err := CopyFileAtomic(filepath.Join(outDir, src), files[src]); err != nil {
			return err
		}
	}
	return nil
}
