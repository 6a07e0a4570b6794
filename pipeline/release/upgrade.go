package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	"github.com/klauspost/compress/zstd"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// What an upgrade bundle carries (UPGRADE_CONTENT).
const (
	ContentSystem = "system"
	ContentConfig = "config"
	ContentAll    = "all"
)

// Upgrade is one build of upgrade bundles: the system version of the plan
// (from the same cached steps as the image), the nodes' configs, or both.
type Upgrade struct {
	Plan    *plan.Plan
	Runner  *run.Runner
	Content string
	// ConfigDir and Env are the cluster's configs and how their secret
	// references resolve, for bundles that carry configs.
	ConfigDir string
	Env       nodeconfig.Lookup
	Key       minisign.PrivateKey
	Out       io.Writer
}

// Bundle is a bundle the job wrote into dist: for a node (MAC, or
// "default"), or for every node ("").
type Bundle struct {
	File, Node, SHA256 string
	Size               int64
}

// BundleName is the file name of a bundle of version for node ("" for one
// that serves every node).
func BundleName(version, node string) string {
	if node == "" {
		return "k3os-rpi4-arm64-" + version + ".upgrade"
	}
	return "k3os-rpi4-arm64-" + version + "-" + strings.ReplaceAll(node, ":", "-") + ".upgrade"
}

// ChannelName is the channel file the job writes beside a system bundle.
const ChannelName = "k3os-rpi4-arm64.channel.json"

// Build writes the bundles into dist, each whole or not at all, with a
// <bundle>.sha256 beside each: one system bundle for every node, or, when
// configs are carried, one per node holding its config alone (the rule of
// the cards: a node receives no other node's secrets). A system bundle
// also gets the channel file that names it.
func (u Upgrade) Build(ctx context.Context, dist string) ([]Bundle, error) {
	p, r := u.Plan, u.Runner
	m := bundle.Manifest{Board: "rpi4", Arch: "arm64", Version: p.Version}
	var sources []bundle.Source
	if u.Content != ContentConfig {
		steps := []*step.Step{p.Boot, p.Rootfs}
		if p.Images != nil {
			steps = append(steps, p.Images)
		}
		if err := r.Prefetch(ctx, steps...); err != nil {
			return nil, err
		}
		s, err := u.systemSources(ctx)
		if err != nil {
			return nil, err
		}
		sources = s
		kout, err := r.Build(ctx, p.Kernel)
		if err != nil {
			return nil, err
		}
		rel, err := os.ReadFile(filepath.Join(kout, "kernel.release"))
		if err != nil {
			return nil, err
		}
		m.Kernel = strings.TrimSpace(string(rel))
	}
	if u.Content == ContentSystem {
		b, err := u.write(dist, BundleName(p.Version, ""), "", m, sources)
		if err != nil {
			return nil, err
		}
		ch, err := json.MarshalIndent(bundle.Channel{Board: m.Board, Arch: m.Arch, Version: m.Version,
			URL: filepath.Base(b.File), Size: b.Size, SHA256: b.SHA256}, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(filepath.Join(dist, ChannelName), append(ch, '\n'), 0o644); err != nil {
			return nil, err
		}
		return []Bundle{b}, nil
	}
	resolved := filepath.Join(r.Cache, "configs", "upgrade")
	defer os.RemoveAll(resolved)
	cluster, err := ResolveConfigs(u.ConfigDir, resolved, u.Env, u.Out)
	if err != nil {
		return nil, err
	}
	if len(cluster.Nodes) == 0 {
		return nil, fmt.Errorf("UPGRADE_CONTENT=%s, but %s holds no node configs", u.Content, u.ConfigDir)
	}
	var out []Bundle
	for _, n := range cluster.Nodes {
		file := filepath.Join(resolved, n.Name()+".yaml")
		own := append(sources[:len(sources):len(sources)], bundle.Source{Name: bundle.ConfigPrefix + n.Name() + ".yaml",
			Open: func() (io.ReadCloser, error) { return os.Open(file) }})
		b, err := u.write(dist, BundleName(p.Version, n.Name()), n.Name(), m, own)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// systemSources are a system version's members, from the boot and root
// steps: the boot slot's FAT compressed (most of it is free space).
func (u Upgrade) systemSources(ctx context.Context) ([]bundle.Source, error) {
	p, r := u.Plan, u.Runner
	bout, err := r.Build(ctx, p.Boot)
	if err != nil {
		return nil, err
	}
	rout, err := r.Build(ctx, p.Rootfs)
	if err != nil {
		return nil, err
	}
	zst := filepath.Join(r.Cache, "upgrade", p.Version+"-"+p.Flavour, bundle.BootImage)
	if err := compressFile(filepath.Join(bout, "boot.vfat"), zst); err != nil {
		return nil, err
	}
	file := func(name, path string) bundle.Source {
		return bundle.Source{Name: name, Open: func() (io.ReadCloser, error) { return os.Open(path) }}
	}
	sources := []bundle.Source{
		file(bundle.BootImage, zst),
		file(bundle.RootFS, filepath.Join(rout, "rootfs.squashfs")),
		file(bundle.Modules, filepath.Join(bout, "modules.squashfs")),
		file(bundle.Release, filepath.Join(rout, "k3os-release")),
	}
	if p.Images != nil {
		iout, err := r.Build(ctx, p.Images)
		if err != nil {
			return nil, err
		}
		entries, err := os.ReadDir(filepath.Join(iout, "images"))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			sources = append(sources, file(bundle.ImagesPrefix+e.Name(), filepath.Join(iout, "images", e.Name())))
		}
	}
	return sources, nil
}

// compressFile writes src as zstd into dst, atomically; single-threaded,
// so that the same file always gives the same bytes.
func compressFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	pr := zstdStream(in, nil, zstd.WithEncoderConcurrency(1))
	defer pr.Close()
	return atomicfile.Write(dst, 0o644, pr)
}

// write writes one signed bundle and its .sha256 into dist. A bundle with
// a node's config holds its secrets: 0600, as the cards.
func (u Upgrade) write(dist, name, node string, m bundle.Manifest, sources []bundle.Source) (Bundle, error) {
	mode := os.FileMode(0o644)
	if node != "" {
		mode = 0o600
	}
	dst := filepath.Join(dist, name)
	h := sha256.New()
	pr, pw := io.Pipe()
	var written bundle.Manifest
	go func() {
		var err error
		written, err = bundle.Write(io.MultiWriter(pw, h), m, sources, u.Key)
		pw.CloseWithError(err)
	}()
	if err := atomicfile.Write(dst, mode, pr); err != nil {
		return Bundle{}, fmt.Errorf("%s: %w", name, err)
	}
	b := Bundle{File: dst, Node: node, SHA256: hex.EncodeToString(h.Sum(nil))}
	fi, err := os.Stat(dst)
	if err != nil {
		return b, err
	}
	b.Size = fi.Size()
	if err := atomicfile.WriteFile(dst+".sha256", []byte(b.SHA256+"  "+name+"\n"), 0o644); err != nil {
		return b, err
	}
	what := "the system"
	if !written.HasSystem() {
		what = "no system"
	}
	if node != "" {
		what += ", the config of " + node
	}
	fmt.Fprintf(u.Out, "%s: %s %s (%s), %d MiB, signed by key %016X\n", dst, m.Version, what, m.Kernel, b.Size>>20, u.Key.ID())
	return b, nil
}

// LoadKey reads the upgrade signing key (UPGRADE_KEY's file), decrypting
// it with password when it is encrypted.
func LoadKey(path, password string) (minisign.PrivateKey, error) {
	var key minisign.PrivateKey
	if path == "" {
		return key, errors.New("UPGRADE_KEY is unset: bundles must be signed; make a key pair with UPGRADE_KEY=file:PATH go tool mage upgrade:keygen, and build the images with the same UPGRADE_KEY")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return key, fmt.Errorf("UPGRADE_KEY: %w", err)
	}
	if minisign.IsEncrypted(b) {
		if password == "" {
			return key, fmt.Errorf("UPGRADE_KEY: %s is encrypted: set UPGRADE_KEY_PASSWORD", path)
		}
		if key, err = minisign.DecryptKey(password, b); err != nil {
			return key, fmt.Errorf("UPGRADE_KEY: %s: %w (is UPGRADE_KEY_PASSWORD right?)", path, err)
		}
		return key, nil
	}
	if err := key.UnmarshalText(b); err != nil {
		return key, fmt.Errorf("UPGRADE_KEY: %s is not a minisign secret key: %w", path, err)
	}
	return key, nil
}

// TrustKeys reads the public keys a card trusts: the signing key's
// (PATH.pub) and any more (UPGRADE_TRUST).
func TrustKeys(keyPath string, more []string) ([]string, error) {
	var files []string
	if keyPath != "" {
		files = append(files, keyPath+".pub")
	}
	var keys []string
	for _, f := range append(files, more...) {
		pub, err := minisign.PublicKeyFromFile(f)
		if err != nil {
			return nil, fmt.Errorf("an upgrade key to trust: %s: %w", f, err)
		}
		text, err := pub.MarshalText()
		if err != nil {
			return nil, err
		}
		keys = append(keys, string(text))
	}
	return keys, nil
}

// Keygen writes a new key pair: the secret key at path (0600; encrypted
// with password when one is given) and its public key at path.pub. It
// never overwrites a key.
func Keygen(path, password string) (minisign.PublicKey, error) {
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return pub, err
	}
	var text []byte
	if password != "" {
		text, err = minisign.EncryptKey(password, priv)
	} else {
		text, err = priv.MarshalText()
	}
	if err != nil {
		return pub, err
	}
	pubText, err := pub.MarshalText()
	if err != nil {
		return pub, err
	}
	for _, f := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(f); err == nil {
			return pub, fmt.Errorf("%s exists: keygen does not overwrite a key", f)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return pub, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return pub, err
	}
	_, err = f.Write(append(text, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return pub, err
	}
	return pub, os.WriteFile(path+".pub", append(pubText, '\n'), 0o644)
}
