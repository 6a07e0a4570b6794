package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"aead.dev/minisign"
)

func sources(files map[string]string, order ...string) []Source {
	var out []Source
	for _, n := range order {
		content := files[n]
		out = append(out, Source{Name: n, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }})
	}
	return out
}

func keyPair(t *testing.T) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func writeBundle(t *testing.T, key minisign.PrivateKey) []byte {
	t.Helper()
	var b bytes.Buffer
	files := map[string]string{RootFS: strings.Repeat("root", 5000), Release: "VERSION=2\n", ConfigPrefix + "default.yaml": "hostname: x\n"}
	_, err := Write(&b, Manifest{Board: "rpi4", Arch: "arm64", Version: "2.0.0"}, sources(files, RootFS, Release, ConfigPrefix+"default.yaml"), key)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readAll(b *Reader) (map[string]string, error) {
	out := map[string]string{}
	for {
		m, r, err := b.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return out, err
		}
		out[m.Name] = string(data)
	}
}

func TestRoundTrip(t *testing.T) {
	pub, priv := keyPair(t)
	other, _ := keyPair(t)
	data := writeBundle(t, priv)
	b, err := Open(bytes.NewReader(data), []minisign.PublicKey{other, pub})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Version != "2.0.0" || !b.Manifest.HasSystem() || b.Key.ID() != pub.ID() || len(b.Manifest.Configs()) != 1 {
		t.Errorf("manifest %+v", b.Manifest)
	}
	files, err := readAll(b)
	if err != nil || files[Release] != "VERSION=2\n" || len(files[RootFS]) != 20000 {
		t.Errorf("members %v: %v", len(files), err)
	}
	// The same members give the same bytes.
	if again := writeBundle(t, priv); len(again) != len(data) {
		t.Errorf("rewritten: %d bytes, then %d", len(data), len(again))
	}
}

// Every refusal is its own error, found before any member is trusted.
func TestRefusals(t *testing.T) {
	pub, priv := keyPair(t)
	other, otherPriv := keyPair(t)
	data := writeBundle(t, priv)

	if _, err := Open(bytes.NewReader(data), []minisign.PublicKey{other}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another key: %v", err)
	}
	if _, err := Open(bytes.NewReader(writeBundle(t, otherPriv)), []minisign.PublicKey{pub}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("signed by another key: %v", err)
	}
	for _, cut := range []int{100, 1500, len(data) / 2, len(data) - 2000} {
		b, err := Open(bytes.NewReader(data[:cut]), []minisign.PublicKey{pub})
		if err == nil {
			_, err = readAll(b)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("truncated at %d of %d: %v", cut, len(data), err)
		}
	}
	// One byte of the root changed.
	altered := bytes.Clone(data)
	i := bytes.Index(altered, []byte("rootroot"))
	altered[i+5] = 'X'
	b, err := Open(bytes.NewReader(altered), []minisign.PublicKey{pub})
	if err == nil {
		_, err = readAll(b)
	}
	if !errors.Is(err, ErrAltered) {
		t.Errorf("altered: %v", err)
	}
	// The manifest changed (a bigger version): the signature fails.
	forged := bytes.Replace(bytes.Clone(data), []byte(`"version": "2.0.0"`), []byte(`"version": "9.0.0"`), 1)
	if _, err := Open(bytes.NewReader(forged), []minisign.PublicKey{pub}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("forged manifest: %v", err)
	}
	// No signature at all.
	var unsigned bytes.Buffer
	tw := tarWriter(&unsigned)
	tw("manifest.json", []byte("{}"))
	tw("rootfs.squashfs", []byte("x"))
	if _, err := Open(bytes.NewReader(unsigned.Bytes()), []minisign.PublicKey{pub}); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	if _, err := Open(strings.NewReader("not a tar at all, just text"), []minisign.PublicKey{pub}); err == nil {
		t.Error("garbage opened")
	}
}

func TestNewer(t *testing.T) {
	for _, c := range []struct {
		a, b string
		sign int
	}{
		{"0.2.0", "0.1.0", 1}, {"0.1.0", "0.2.0", -1}, {"1.0.0", "1.0.0", 0}, {"1.10.0", "1.9.0", 1},
		{"1.0.0", "1.0.0-rc1", 1}, {"1.0.0-rc2", "1.0.0-rc1", 1}, {"v2", "1.9.9", 1}, {"1.0.0+b2", "1.0.0+b1", 0},
	} {
		got := Newer(c.a, c.b)
		if (got > 0) != (c.sign > 0) || (got < 0) != (c.sign < 0) {
			t.Errorf("Newer(%q, %q) = %d, want sign %d", c.a, c.b, got, c.sign)
		}
	}
}

func tarWriter(w io.Writer) func(string, []byte) {
	tw := tar.NewWriter(w)
	return func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
		tw.Flush()
	}
}
