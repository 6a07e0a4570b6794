package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
)

// Channel is a release channel's file: the latest version and where its
// bundle is. `k3os upgrade --channel URL` follows it; the bundle's own
// signature, not the channel, is what a node trusts.
type Channel struct {
	Board   string `json:"board"`
	Arch    string `json:"arch"`
	Version string `json:"version"`
	// URL is the bundle's, absolute or relative to the channel file's.
	URL    string `json:"url"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ParseChannel reads a channel file fetched from base, resolving the
// bundle's URL against it.
func ParseChannel(data []byte, base *url.URL) (Channel, error) {
	var c Channel
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("the channel file is not JSON: %w", err)
	}
	if c.Version == "" || c.URL == "" || len(c.SHA256) != 64 {
		return c, errors.New("the channel file lacks version, url or sha256")
	}
	u, err := base.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("the channel's bundle URL %q: %w", c.URL, err)
	}
	c.URL = u.String()
	return c, nil
}
