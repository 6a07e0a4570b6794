package upgrade

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// Client fetches bundles and channel files over https only, redirects
// included; a bundle is large, so only the wait for an answer is bounded.
func Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to %s: upgrades come over https only", req.URL.Redacted())
		}
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		return nil
	}}
}

func httpsURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: upgrades come from a file or an https URL", raw)
	}
	return u, nil
}

// Fetch downloads url into the state partition's upgrade directory and
// returns the file. A download cut short is resumed where it stopped by
// the next Fetch of the same URL. progress, when set, is told the bytes
// so far and the total (0 when unknown).
func (n *Node) Fetch(ctx context.Context, c *http.Client, raw string, progress func(done, total int64)) (string, error) {
	u, err := httpsURL(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(u.String()))
	dir := n.path(layout.UpgradeDir, "download")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	part := filepath.Join(dir, hex.EncodeToString(sum[:8])+".part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK, http.StatusRequestedRangeNotSatisfiable:
		// A fresh start: the server does not resume, or the partial file
		// is not the one it has now.
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			resp.Body.Close()
			f.Close()
			os.Remove(part)
			return n.Fetch(ctx, c, raw, progress)
		}
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		have = 0
	default:
		return "", fmt.Errorf("downloading %s: %s", u.Redacted(), resp.Status)
	}
	total := int64(0)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	w := &progressWriter{w: f, done: have, total: total, tell: progress}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return "", fmt.Errorf("downloading %s (run it again to resume at %d MiB): %w", u.Redacted(), w.done>>20, err)
	}
	w.report(true)
	if err := f.Sync(); err != nil {
		return "", err
	}
	done := filepath.Join(dir, hex.EncodeToString(sum[:8])+".upgrade")
	return done, os.Rename(part, done)
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	tell        func(done, total int64)
	last        time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.report(false)
	return n, err
}

func (p *progressWriter) report(final bool) {
	if p.tell != nil && (final || time.Since(p.last) >= 2*time.Second) {
		p.last = time.Now()
		p.tell(p.done, p.total)
	}
}

// FetchChannel reads a channel file and, when it names a version newer
// than the committed one (or, with allowDowngrade, another one),
// downloads its bundle and checks the channel's sha256 of it. It returns
// "" when the node is up to date.
func (n *Node) FetchChannel(ctx context.Context, c *http.Client, raw string, allowDowngrade bool, progress func(done, total int64)) (string, error) {
	u, err := httpsURL(raw)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("reading the channel %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("reading the channel %s: %s", u.Redacted(), resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	ch, err := bundle.ParseChannel(data, resp.Request.URL)
	if err != nil {
		return "", fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	if ch.Board != Board || ch.Arch != Arch {
		return "", fmt.Errorf("the channel %s is for %s-%s; this node is %s-%s", u.Redacted(), ch.Board, ch.Arch, Board, Arch)
	}
	_, _, cv, _, err := n.Committed()
	if err != nil {
		return "", err
	}
	if d := bundle.Newer(ch.Version, cv); d == 0 || (d < 0 && !allowDowngrade) {
		n.say("upgrade: the channel's latest is %s; the node runs %s: nothing to do", ch.Version, cv)
		return "", nil
	}
	n.say("upgrade: the channel's latest is %s (%d MiB)", ch.Version, ch.Size>>20)
	file, err := n.Fetch(ctx, c, ch.URL, progress)
	if err != nil {
		return "", err
	}
	if err := fileSHA256(file, ch.SHA256); err != nil {
		os.Remove(file)
		return "", fmt.Errorf("%s: %w", ch.URL, err)
	}
	return file, nil
}

func fileSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("the download's sha256 is %s, the channel says %s", got, want)
	}
	return nil
}
