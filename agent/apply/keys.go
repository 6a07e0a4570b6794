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
// under /var/lib/k3os/keys, and rebuilds rancher's authorized_keys. A
// reference that cannot be fetched, or yields no valid key, keeps its
// cached keys: a network or site outage must not lock the user out. To
// revoke them, remove the entry from the config. A nil client means one
// with a 30s timeout.
func FetchKeys(ctx context.Context, c *Context, client *http.Client, retries int) error {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
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
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (keeping the keys fetched before)", ref, err))
			continue
		}
		data := "# " + u + "\n" + strings.Join(keys, "\n") + "\n"
		if err := c.writeFile(keyCacheFile(ref), []byte(data), 0o644, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log().Infof("fetched %d SSH keys for %s", len(keys), ref)
	}
	if err := sshStep(ctx, c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fetchKeys gets the valid keys at u, retrying on network errors and
// server errors.
func fetchKeys(ctx context.Context, c *Context, client *http.Client, u string, retries int) ([]string, error) {
	delay := retryDelay
	for attempt := 0; ; attempt++ {
		keys, retry, err := getKeys(ctx, c, client, u)
		if err == nil {
			return keys, nil
		}
		if !retry || attempt >= retries {
			return nil, err
		}
		c.log().Infof("fetching %s: %v; retrying in %s", u, err, delay)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// getKeys makes one attempt; retry tells whether another may succeed.
func getKeys(ctx context.Context, c *Context, client *http.Client, u string) (keys []string, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, retry, fmt.Errorf("%s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysSize))
	if err != nil {
		return nil, true, err
	}
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
	if len(keys) == 0 {
		return nil, false, errors.New("no valid keys there")
	}
	return keys, false, nil
}
