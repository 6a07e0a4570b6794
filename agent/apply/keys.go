package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultKeyURL maps github:USER and gitlab:USER to the public keys those
// sites publish, and an https URL to itself.
func DefaultKeyURL(ref string) (string, bool) {
	site, user, _ := strings.Cut(ref, ":")
	switch {
	case site == "github" && user != "":
		return "https://github.com/" + url.PathEscape(user) + ".keys", true
	case site == "gitlab" && user != "":
		return "https://gitlab.com/" + url.PathEscape(user) + ".keys", true
	case strings.HasPrefix(ref, "https://"):
		return ref, true
	}
	return "", false
}

// retryDelay is the wait before the first retry; it doubles each time.
var retryDelay = 2 * time.Second

// maxKeysSize bounds what is read from a key URL.
const maxKeysSize = 1 << 20

// FetchKeys fetches the keys of the github:, gitlab: and https entries of
// ssh_authorized_keys, trying each up to retries more times, caches them
// under /var/lib/k3os/keys, and rebuilds rancher's authorized_keys. The
// site's answer is the truth: a key removed there (an empty list, or the
// account gone: a 4xx) is removed here too. Only when the site cannot be
// asked (a network error, a 5xx, a 429) do the cached keys stay, so that
// an outage does not lock the user out. A nil client means SecureClient.
func FetchKeys(ctx context.Context, c *Context, client *http.Client, retries int) error {
	if client == nil {
		client = SecureClient()
	}
	keyURL := c.KeyURL
	if keyURL == nil {
		keyURL = DefaultKeyURL
	}
	var errs []error
	for _, ref := range c.cfg().SSHAuthorizedKeys {
		ref = strings.TrimSpace(ref)
		if !isKeyRef(ref) {
			continue
		}
		u, ok := keyURL(ref)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no URL for it", ref))
			continue
		}
		keys, err := fetchKeys(ctx, c, client, u, retries)
		var outage outageError
		switch {
		case errors.As(err, &outage):
			errs = append(errs, fmt.Errorf("%s: %w (keeping the keys fetched before)", ref, err))
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w (its cached keys are removed)", ref, err))
			keys = nil
		}
		data := "# " + u + "\n" + strings.Join(keys, "\n") + "\n"
		if err := c.writeFile(keyCacheFile(ref), []byte(data), 0o644, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log().Infof("%s: %d SSH keys", ref, len(keys))
	}
	if err := sshStep(ctx, c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SecureClient is the client keys are fetched with: a bounded time, and
// redirects to https only (keys must not travel in the clear).
func SecureClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to %s: keys come over https only", req.URL.Redacted())
		}
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		return nil
	}}
}

// outageError is a failure to ask the site at all, which keeps the cache.
type outageError struct{ error }

func (e outageError) Unwrap() error { return e.error }

// fetchKeys gets the valid keys at u, retrying while the site cannot be
// asked.
func fetchKeys(ctx context.Context, c *Context, client *http.Client, u string, retries int) ([]string, error) {
	delay := retryDelay
	for attempt := 0; ; attempt++ {
		keys, err := getKeys(ctx, c, client, u)
		var outage outageError
		if err == nil || !errors.As(err, &outage) || attempt >= retries {
			return keys, err
		}
		c.log().Infof("fetching %s: %v; retrying in %s", u, err, delay)
		select {
		case <-ctx.Done():
			return nil, outageError{ctx.Err()}
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// getKeys makes one attempt. Any 2xx is the answer, an empty one too.
func getKeys(ctx context.Context, c *Context, client *http.Client, u string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) && strings.Contains(uerr.Err.Error(), "https only") {
			return nil, err // a redirect refused: no outage
		}
		return nil, outageError{err}
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 500 || code == http.StatusTooManyRequests:
		return nil, outageError{errors.New(resp.Status)}
	case code < 200 || code > 299:
		return nil, errors.New(resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysSize))
	if err != nil {
		return nil, outageError{err}
	}
	var keys []string
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			c.log().Warnf("skipping a line of %s: %v", u, err)
			continue
		}
		keys = append(keys, line)
	}
	return keys, nil
}
