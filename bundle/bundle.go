// Package bundle is the upgrade bundle's format: one tar file whose first
// entry is a manifest naming every member with its size and sha256, whose
// second is the manifest's minisign (ed25519) signature, and whose members
// follow in the manifest's order. The build writes it; a node reads it as
// a stream and trusts nothing before the signature checks out, and no
// member before its bytes match the manifest.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strconv"
	"strings"

	"aead.dev/minisign"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// Names of the first two entries.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.json.minisig"
)

// The members of a system version, and the prefix of node configs.
const (
	BootImage    = "boot.vfat.zst" // the boot slot's FAT, zstd-compressed
	RootFS       = "rootfs.squashfs"
	Modules      = "modules.squashfs"
	Release      = "k3os-release"
	ConfigPrefix = "config/" // config/<MAC>.yaml, config/default.yaml
	// ImagesPrefix names the image tarballs of the version's k3s
	// (images/<file>), part of the system version when present.
	ImagesPrefix = "images/"
)

// SystemMembers are what a bundle that carries a system version holds.
var SystemMembers = []string{BootImage, RootFS, Modules, Release}

// Manifest says what a bundle is and holds.
type Manifest struct {
	Format int `json:"format"`
	// Board and Arch are what the bundle runs on ("rpi4", "arm64").
	Board string `json:"board"`
	Arch  string `json:"arch"`
	// Version is the system version; Kernel its kernel release.
	Version string `json:"version"`
	Kernel  string `json:"kernel,omitempty"`
	// Members are every file after the signature, in order.
	Members []Member `json:"members"`
}

// Member is one file of the bundle.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// HasSystem says whether the bundle carries a system version (and not
// only configs).
func (m Manifest) HasSystem() bool {
	for _, mem := range m.Members {
		if mem.Name == RootFS {
			return true
		}
	}
	return false
}

// Configs are the node configs the bundle carries, by file name.
func (m Manifest) Configs() []string {
	var out []string
	for _, mem := range m.Members {
		if name, ok := strings.CutPrefix(mem.Name, ConfigPrefix); ok {
			out = append(out, name)
		}
	}
	return out
}

func (m Manifest) check() error {
	if m.Format != Format {
		return fmt.Errorf("bundle format %d; this node reads format %d", m.Format, Format)
	}
	if m.Board == "" || m.Arch == "" || m.Version == "" || len(m.Members) == 0 {
		return errors.New("the manifest lacks board, arch, version or members")
	}
	seen := map[string]bool{}
	for _, mem := range m.Members {
		if mem.Name == "" || path.Clean(mem.Name) != mem.Name || strings.HasPrefix(mem.Name, "/") || strings.HasPrefix(mem.Name, "..") ||
			seen[mem.Name] || len(mem.SHA256) != 64 || mem.Size < 0 {
			return fmt.Errorf("manifest member %q is not a plain, unique, checksummed name", mem.Name)
		}
		seen[mem.Name] = true
	}
	return nil
}

// Source is a member to write: its name and its content.
type Source struct {
	Name string
	Open func() (io.ReadCloser, error)
}

// Write writes a bundle of the sources, in order, described by m (its
// Members are filled in) and signed with key. Each source is read twice:
// once for its checksum, once into the bundle.
func Write(w io.Writer, m Manifest, sources []Source, key minisign.PrivateKey) (Manifest, error) {
	m.Format = Format
	m.Members = nil
	for _, s := range sources {
		r, err := s.Open()
		if err != nil {
			return m, err
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			return m, fmt.Errorf("%s: %w", s.Name, err)
		}
		m.Members = append(m.Members, Member{Name: s.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if err := m.check(); err != nil {
		return m, err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	mj = append(mj, '\n')
	sig := minisign.SignWithComments(key, mj, "k3os-rpi4 "+m.Board+"-"+m.Arch+" "+m.Version, "k3os-rpi4 upgrade bundle")
	tw := tar.NewWriter(w)
	add := func(name string, size int64, r io.Reader) error {
		// Fixed owners and times: the same members give the same bundle.
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s changed while the bundle was written (%d bytes, then %d)", name, size, n)
		}
		return err
	}
	if err := add(ManifestName, int64(len(mj)), bytes.NewReader(mj)); err != nil {
		return m, err
	}
	if err := add(SignatureName, int64(len(sig)), bytes.NewReader(sig)); err != nil {
		return m, err
	}
	for i, s := range sources {
		r, err := s.Open()
		if err != nil {
			return m, err
		}
		err = add(s.Name, m.Members[i].Size, r)
		r.Close()
		if err != nil {
			return m, err
		}
	}
	return m, tw.Close()
}

// Reader reads a bundle whose signature checked out.
type Reader struct {
	Manifest Manifest
	// Key is the trusted key that signed it.
	Key minisign.PublicKey
	tr  *tar.Reader
	n   int
}

// Refusals, each its own error: the node says which and changes nothing.
var (
	ErrUnsigned  = errors.New("the bundle is not signed")
	ErrUntrusted = errors.New("the bundle is signed by a key this node does not trust")
	ErrTruncated = errors.New("the bundle is truncated")
	ErrAltered   = errors.New("the bundle is altered: a member does not match its signed checksum")
)

// Open reads a bundle's manifest and signature from r and checks the
// signature against the trusted keys.
func Open(r io.Reader, keys []minisign.PublicKey) (*Reader, error) {
	tr := tar.NewReader(r)
	mj, err := entry(tr, ManifestName, 1<<20)
	if err != nil {
		return nil, err
	}
	sig, err := entry(tr, SignatureName, 1<<16)
	if errors.Is(err, errOtherEntry) {
		return nil, ErrUnsigned
	}
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: it trusts no key at all", ErrUntrusted)
	}
	b := &Reader{tr: tr}
	trusted := false
	for _, k := range keys {
		if minisign.Verify(k, mj, sig) {
			b.Key, trusted = k, true
			break
		}
	}
	if !trusted {
		var s minisign.Signature
		if s.UnmarshalText(sig) == nil {
			return nil, fmt.Errorf("%w (signed by key %X)", ErrUntrusted, s.KeyID)
		}
		return nil, ErrUntrusted
	}
	if err := json.Unmarshal(mj, &b.Manifest); err != nil {
		return nil, fmt.Errorf("the signed manifest does not read: %w", err)
	}
	if err := b.Manifest.check(); err != nil {
		return nil, err
	}
	return b, nil
}

var errOtherEntry = errors.New("another entry")

// entry reads the next tar entry, which must be called name.
func entry(tr *tar.Reader, name string, max int64) ([]byte, error) {
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, ErrTruncated
	}
	if err != nil {
		return nil, fmt.Errorf("not a bundle: %w", err)
	}
	if hdr.Name != name {
		if name == ManifestName {
			return nil, fmt.Errorf("not a bundle: its first entry is %q, not %s", hdr.Name, ManifestName)
		}
		return nil, errOtherEntry
	}
	if hdr.Size > max {
		return nil, fmt.Errorf("%s is %d bytes", name, hdr.Size)
	}
	b, err := io.ReadAll(tr)
	if err != nil || int64(len(b)) != hdr.Size {
		return nil, ErrTruncated
	}
	return b, nil
}

// Next returns the next member and a reader of its content, which fails
// with ErrAltered or ErrTruncated at its end unless the bytes are those
// the manifest signed. It returns io.EOF after the last member.
func (b *Reader) Next() (Member, io.Reader, error) {
	if b.n >= len(b.Manifest.Members) {
		return Member{}, nil, io.EOF
	}
	want := b.Manifest.Members[b.n]
	b.n++
	hdr, err := b.tr.Next()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return want, nil, ErrTruncated
	}
	if err != nil {
		return want, nil, err
	}
	if hdr.Name != want.Name || hdr.Size != want.Size {
		return want, nil, fmt.Errorf("%w: entry %q (%d bytes) where the manifest says %q (%d bytes)", ErrAltered, hdr.Name, hdr.Size, want.Name, want.Size)
	}
	return want, &checked{r: b.tr, want: want, h: sha256.New()}, nil
}

// checked verifies a member's bytes as they are read.
type checked struct {
	r    io.Reader
	want Member
	h    hash.Hash
	n    int64
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, fmt.Errorf("%s: %w", c.want.Name, ErrTruncated)
	}
	if errors.Is(err, io.EOF) {
		if c.n != c.want.Size {
			return n, fmt.Errorf("%s: %w", c.want.Name, ErrTruncated)
		}
		if hex.EncodeToString(c.h.Sum(nil)) != c.want.SHA256 {
			return n, fmt.Errorf("%s: %w", c.want.Name, ErrAltered)
		}
	}
	return n, err
}

// Newer compares two versions as dotted numbers with an optional
// pre-release after '-' (semver precedence; a '+build' part is ignored):
// it is > 0 when a is newer than b.
func Newer(a, b string) int {
	na, pa := splitVersion(a)
	nb, pb := splitVersion(b)
	for i := 0; i < max(len(na), len(nb)); i++ {
		var x, y int
		if i < len(na) {
			x = na[i]
		}
		if i < len(nb) {
			y = nb[i]
		}
		if x != y {
			return x - y
		}
	}
	switch {
	case pa == pb:
		return 0
	case pa == "": // a release is newer than its pre-releases
		return 1
	case pb == "":
		return -1
	}
	return strings.Compare(pa, pb)
}

func splitVersion(v string) ([]int, string) {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "+")
	core, pre, _ := strings.Cut(v, "-")
	var nums []int
	for _, f := range strings.Split(core, ".") {
		n, _ := strconv.Atoi(f)
		nums = append(nums, n)
	}
	return nums, pre
}
