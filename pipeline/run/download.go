package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// client fetches pinned downloads: an unreachable host fails within
// seconds, a slow mirror may take its time.
var client = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
}}

// Prefetch fetches and checks every pinned download that building steps
// needs, before anything is built: the downloads of each step not in the
// cache and of the uncached steps it depends on. An unreachable source or
// a wrong checksum so fails in seconds, with the input's hint, rather than
// after a long build. Every failure is reported.
func (r *Runner) Prefetch(ctx context.Context, steps ...*step.Step) error {
	type need struct {
		s  *step.Step
		in step.Input
	}
	var needs []need
	seen := map[string]bool{}
	var walk func(*step.Step) error
	walk = func(s *step.Step) error {
		if seen[s.ID()] {
			return nil
		}
		seen[s.ID()] = true
		cached, err := r.Cached(s)
		if err != nil || cached {
			return err
		}
		for _, in := range s.Inputs {
			switch {
			case in.Step != nil:
				if err := walk(in.Step); err != nil {
					return err
				}
			case len(in.Downloads) > 0:
				needs = append(needs, need{s, in})
			}
		}
		return nil
	}
	for _, s := range steps {
		if err := walk(s); err != nil {
			return err
		}
	}
	errs := make([]error, len(needs))
	var wg sync.WaitGroup
	for i, n := range needs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.downloadSet(ctx, n.in.Downloads); err != nil {
				errs[i] = inputError(n.s, n.in, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fetchSem bounds the downloads running at once, across every set.
var fetchSem = make(chan struct{}, 4)

// download fetches a pinned file once into the cache and checks its sha256.
// A file: URL names a local file (offline builds).
func (r *Runner) download(ctx context.Context, d step.Download) (string, error) {
	dst := filepath.Join(r.Cache, "downloads", d.SHA256)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	fetchSem <- struct{}{}
	defer func() { <-fetchSem }()
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
		resp, err := client.Do(req)
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
	if err := f.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.SHA256 {
		return "", fmt.Errorf("%s: sha256 is %s, the lock says %s", d.URL, got, d.SHA256)
	}
	return dst, os.Rename(f.Name(), dst)
}

func downloadSetList(ds []step.Download) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s %s\n", d.Name, d.SHA256)
	}
	return b.String()
}

// downloadSet fetches a set of pinned files and returns a directory
// holding each under its name, as hard links into the download cache.
func (r *Runner) downloadSet(ctx context.Context, ds []step.Download) (string, error) {
	dir := filepath.Join(r.Cache, "downloads", "sets", step.Digest(downloadSetList(ds))[:32])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	paths := make([]string, len(ds))
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) {
		// Another fetch of the same set (Prefetch, then the build) may
		// have got there first: its directory is as good.
		if _, serr := os.Stat(dir); serr != nil {
			return "", err
		}
	}
	return dir, nil
}

// copyTree copies a file or a directory tree with its modes and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(to, info.Mode().Perm()) // past the umask
		}
		return err
	})
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
