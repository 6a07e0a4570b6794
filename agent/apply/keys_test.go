package apply

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestFetchKeys(t *testing.T) {
	defer func(d time.Duration) { retryDelay = d }(retryDelay)
	retryDelay = 0
	alice, alice2, bob, site := newKey(t, "alice"), newKey(t, "alice-2"), newKey(t, "bob-old"), newKey(t, "site")
	hits := map[string]int{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits[r.URL.Path]++
		switch r.URL.Path {
		case "/github/alice.keys":
			if hits[r.URL.Path] < 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(alice + "\ngarbage line\n" + alice2 + "\n"))
		case "/github/bob.keys":
			http.Error(w, "down", http.StatusBadGateway)
		case "/keys.txt":
			w.Write([]byte(site + "\n"))
		case "/github/carol.keys": // every key revoked
			w.WriteHeader(http.StatusOK)
		case "/github/dave.keys":
			http.Redirect(w, r, "http://example.invalid/dave.keys", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	cfg := &nodeconfig.Config{SSHAuthorizedKeys: []string{"github:alice", "github:bob", "gitlab:ghost", srv.URL + "/keys.txt", "github:carol", "github:dave"}}
	n := newNode(t, cfg)
	n.KeyURL = func(ref string) (string, bool) {
		if site, user, ok := strings.Cut(ref, ":"); ok && site != "https" {
			return srv.URL + "/" + site + "/" + user + ".keys", true
		}
		return ref, true
	}
	writeTestFile(t, n.Root, keyCacheFile("github:bob"), bob+"\n")
	carol, dave, ghost := newKey(t, "carol-revoked"), newKey(t, "dave"), newKey(t, "ghost-deleted")
	writeTestFile(t, n.Root, keyCacheFile("github:carol"), carol+"\n")
	writeTestFile(t, n.Root, keyCacheFile("github:dave"), dave+"\n")
	writeTestFile(t, n.Root, keyCacheFile("gitlab:ghost"), ghost+"\n")

	client := SecureClient()
	client.Transport = srv.Client().Transport
	err := FetchKeys(context.Background(), n.Context, client, 3)
	if err == nil {
		t.Fatal("FetchKeys = nil error, want errors for github:bob and gitlab:ghost")
	}
	for _, want := range []string{"github:bob: 502 Bad Gateway", "gitlab:ghost: 404 Not Found", "keys come over https only"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("FetchKeys error = %q, want it to mention %q", err, want)
		}
	}
	if got, want := hits["/github/alice.keys"], 3; got != want {
		t.Errorf("requests for alice = %d, want %d (two 503s, then the keys)", got, want)
	}
	if got, want := hits["/github/bob.keys"], 4; got != want {
		t.Errorf("requests for bob = %d, want %d (1 + 3 retries)", got, want)
	}
	if got, want := hits["/gitlab/ghost.keys"], 1; got != want {
		t.Errorf("requests for ghost = %d, want %d (a 404 is not retried)", got, want)
	}
	if got, want := n.read(t, keyCacheFile("github:bob")), bob+"\n"; got != want {
		t.Errorf("bob's cache = %q, want the old one %q", got, want)
	}
	// An outage (bob's 502) keeps the cached keys; the site's answer (an
	// empty list for carol, no account for ghost) revokes them, and so
	// does a redirect to http (dave).
	want := header + alice + "\n" + alice2 + "\n" + bob + "\n" + site + "\n"
	if got := n.read(t, "/home/rancher/.ssh/authorized_keys"); got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
}

func TestDefaultKeyURL(t *testing.T) {
	tests := []struct {
		ref, want string
		ok        bool
	}{
		{"github:octocat", "https://github.com/octocat.keys", true},
		{"gitlab:octocat", "https://gitlab.com/octocat.keys", true},
		{"https://example.com/k", "https://example.com/k", true},
		{"http://example.com/k", "", false},
		{"github:", "", false},
	}
	for _, tt := range tests {
		if got, ok := DefaultKeyURL(tt.ref); got != tt.want || ok != tt.ok {
			t.Errorf("DefaultKeyURL(%q) = %q, %v, want %q, %v", tt.ref, got, ok, tt.want, tt.ok)
		}
	}
}
