package vmtest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	diskfs "github.com/diskfs/go-diskfs"
	"github.com/klauspost/compress/zstd"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// Upgrades are what the upgrade cases boot: the image's version (v1) and
// a bundle of a second version built by the boot test from the same steps
// with a kernel of its own, signed with Key, which the image trusts.
type Upgrades struct {
	V1, V1Kernel string
	V2, V2Kernel string
	Bundle       string
	Key          minisign.PrivateKey
	// AllPowerCuts cuts the power at every point of the list instead of
	// one per phase (K3OS_VMTEST_POWER_CUTS=all).
	AllPowerCuts bool
}

// members reads the v2 bundle whole: its manifest and members' bytes.
func (u *Upgrades) members() (bundle.Manifest, map[string][]byte, error) {
	f, err := os.Open(u.Bundle)
	if err != nil {
		return bundle.Manifest{}, nil, err
	}
	defer f.Close()
	pub, ok := u.Key.Public().(minisign.PublicKey)
	if !ok {
		return bundle.Manifest{}, nil, errors.New("the test key has no minisign public key")
	}
	b, err := bundle.Open(f, []minisign.PublicKey{pub})
	if err != nil {
		return bundle.Manifest{}, nil, err
	}
	out := map[string][]byte{}
	for {
		mem, r, err := b.Next()
		if errors.Is(err, io.EOF) {
			return b.Manifest, out, nil
		}
		if err != nil {
			return b.Manifest, nil, err
		}
		if out[mem.Name], err = io.ReadAll(r); err != nil {
			return b.Manifest, nil, err
		}
	}
}

// craft writes a bundle of members (in the manifest's order, then any
// others) signed with key.
func craft(path string, m bundle.Manifest, members map[string][]byte, key minisign.PrivateKey) error {
	var sources []bundle.Source
	seen := map[string]bool{}
	add := func(name string) {
		if data, ok := members[name]; ok && !seen[name] {
			seen[name] = true
			sources = append(sources, bundle.Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }})
		}
	}
	for _, mem := range m.Members {
		add(mem.Name)
	}
	for name := range members {
		add(name)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := bundle.Write(f, m, sources, key); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bootAs rewrites a version's compressed boot image for another version:
// its cmdline.txt names that version; with broken, its initramfs is zeros,
// so that the kernel panics finding no root.
func bootAs(dir string, zst []byte, from, to string, broken bool) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(zst))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	img := filepath.Join(dir, "boot-"+to+".vfat")
	f, err := os.Create(img)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(f, zr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	defer os.Remove(img)
	d, err := diskfs.Open(img)
	if err != nil {
		return nil, err
	}
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		d.Close()
		return nil, err
	}
	files := map[string][]byte{}
	h, err := fsys.OpenFile("/cmdline.txt", os.O_RDONLY)
	if err != nil {
		d.Close()
		return nil, err
	}
	cmdline, err := io.ReadAll(h)
	if err != nil {
		d.Close()
		return nil, err
	}
	old := layout.SystemParam + "=" + from
	if !bytes.Contains(cmdline, []byte(old)) {
		d.Close()
		return nil, fmt.Errorf("the boot image's cmdline.txt does not name %s: %s", old, cmdline)
	}
	files["/cmdline.txt"] = bytes.Replace(cmdline, []byte(old), []byte(layout.SystemParam+"="+to), 1)
	if broken {
		files["/initrd.img"] = make([]byte, 64<<10)
	}
	for name, data := range files {
		w, err := fsys.OpenFile(name, os.O_RDWR|os.O_TRUNC)
		if err == nil {
			_, err = w.Write(data)
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("rewriting %s: %w", name, err)
		}
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		return nil, err
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, err
	}
	return zw.EncodeAll(raw, nil), nil
}

// badBundle is a bundle a node must refuse, and the words of its refusal.
type badBundle struct {
	name, file, refusal string
}

// badBundles writes the bundles of the refusal checks into dir: unsigned,
// signed by another key, truncated, altered, for another architecture, a
// downgrade.
func (u *Upgrades) badBundles(dir string) ([]badBundle, error) {
	m, members, err := u.members()
	if err != nil {
		return nil, err
	}
	_, otherKey, err := minisign.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	good, err := os.ReadFile(u.Bundle)
	if err != nil {
		return nil, err
	}
	var out []badBundle
	write := func(name, refusal string, data []byte) error {
		p := filepath.Join(dir, name+".upgrade")
		out = append(out, badBundle{name, p, refusal})
		return os.WriteFile(p, data, 0o644)
	}
	signed := func(name, refusal string, m bundle.Manifest, key minisign.PrivateKey) error {
		p := filepath.Join(dir, name+".upgrade")
		out = append(out, badBundle{name, p, refusal})
		return craft(p, m, members, key)
	}
	if err := signed("other-key", "signed by a key this node does not trust", m, otherKey); err != nil {
		return nil, err
	}
	amd := m
	amd.Arch = "amd64"
	if err := signed("other-arch", "for rpi4-amd64", amd, u.Key); err != nil {
		return nil, err
	}
	old := m
	old.Version = "0.0.1"
	if err := signed("downgrade", "older than the committed", old, u.Key); err != nil {
		return nil, err
	}
	// Unsigned: the manifest, then the members, no signature.
	var unsigned bytes.Buffer
	tw := tar.NewWriter(&unsigned)
	tr := tar.NewReader(bytes.NewReader(good))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Name == bundle.SignatureName {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
		if hdr.Name != bundle.ManifestName {
			break // the first member is enough to be refused on
		}
	}
	tw.Close()
	if err := write("unsigned", "not signed", unsigned.Bytes()); err != nil {
		return nil, err
	}
	// Truncated and altered within the first member (the boot image), so
	// that the check costs a few MiB of copying, not the whole bundle.
	first := firstMemberOffset(good)
	if first < 0 {
		return nil, errors.New("the v2 bundle has no members")
	}
	size := int64(len(members[bundle.BootImage]))
	if err := write("truncated", "truncated", good[:first+size/2]); err != nil {
		return nil, err
	}
	altered := bytes.Clone(good)
	altered[first+size/2] ^= 0xff
	if err := write("altered", "altered", altered); err != nil {
		return nil, err
	}
	return out, nil
}

// firstMemberOffset is where the first member's content starts in a
// bundle: after the manifest and its signature.
func firstMemberOffset(b []byte) int64 {
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for i := 0; i < 3; i++ {
		hdr, err := tr.Next()
		if err != nil {
			return -1
		}
		if i == 2 && !strings.HasPrefix(hdr.Name, bundle.ManifestName) {
			return int64(len(b)) - int64(r.Len())
		}
	}
	return -1
}
