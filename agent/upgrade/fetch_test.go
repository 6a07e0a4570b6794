package upgrade

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A download cut short resumes where it stopped, with a Range request.
func TestFetchResumes(t *testing.T) {
	pub, _ := keys(t)
	n := newTestNode(t, pub)
	data := make([]byte, 3<<20)
	rand.Read(data)
	var requests atomic.Int32
	var ranges []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		if requests.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:1<<20])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "v2.upgrade", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	c := srv.Client()
	if _, err := n.Fetch(context.Background(), c, srv.URL+"/v2.upgrade", nil); err == nil || !strings.Contains(err.Error(), "run it again to resume") {
		t.Fatalf("a cut download: %v", err)
	}
	var last int64
	file, err := n.Fetch(context.Background(), c, srv.URL+"/v2.upgrade", func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	if !bytes.Equal(got, data) || last != int64(len(data)) {
		t.Errorf("downloaded %d bytes (progress said %d), want %d", len(got), last, len(data))
	}
	if ranges[1] != "bytes=1048576-" {
		t.Errorf("the second request asked for %q, want the rest", ranges[1])
	}
	if _, err := n.Fetch(context.Background(), c, "http://example.com/v2.upgrade", nil); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http: %v", err)
	}
}

// A channel names the latest version; the node downloads it only when it
// is newer, and checks its sha256.
func TestFetchChannel(t *testing.T) {
	pub, _ := keys(t)
	n := newTestNode(t, pub)
	data := []byte("a bundle")
	sum := sha256.Sum256(data)
	channel := ""
	mux := http.NewServeMux()
	mux.HandleFunc("/stable.json", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(channel)) })
	mux.HandleFunc("/bundles/v2.upgrade", func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		version, sha, want string
	}{
		{"1.0.0", hex.EncodeToString(sum[:]), "up to date"},
		{"0.9.0", hex.EncodeToString(sum[:]), "up to date"},
		{"2.0.0", strings.Repeat("0", 64), "the channel says"},
		{"2.0.0", hex.EncodeToString(sum[:]), ""},
	} {
		channel = fmt.Sprintf(`{"board":"rpi4","arch":"arm64","version":%q,"url":"bundles/v2.upgrade","size":8,"sha256":%q}`, tc.version, tc.sha)
		file, err := n.FetchChannel(context.Background(), srv.Client(), srv.URL+"/stable.json", false, nil)
		switch {
		case tc.want == "up to date":
			if err != nil || file != "" {
				t.Errorf("%s: %q %v, want nothing to do", tc.version, file, err)
			}
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", tc.version, err, tc.want)
			}
		default:
			if got, _ := os.ReadFile(file); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: %v, got %q", tc.version, err, got)
			}
		}
	}
}
