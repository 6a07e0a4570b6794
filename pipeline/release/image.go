// Package release is the main job and what it publishes: it validates and
// resolves the cluster's configs, builds the image's steps, and puts the
// image into dist/ with its compressed copy, manifest, SBOM and checksums.
package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"aead.dev/minisign"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/images"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// Image is one build of the SD-card image.
type Image struct {
	Plan   *plan.Plan
	Runner *run.Runner
	// ConfigDir is the cluster's config directory (NoCluster for none);
	// Env resolves its ${NAME} secret references.
	ConfigDir string
	Env       nodeconfig.Lookup
	// PerNode makes one card per node config, named after the node and
	// holding its config alone, instead of one card for the cluster.
	PerNode bool
	// Trust are the public keys the card's nodes accept upgrades signed
	// with (minisign text form).
	Trust []string
	// Resolve are the options of a cluster that runs in QEMU only.
	Resolve Resolve
	// ReleaseURL, when set, is where dist's files are published: the job
	// writes the Raspberry Pi Imager repository naming the card there.
	ReleaseURL string
	// Out receives the validation report and the closing line.
	Out io.Writer
}

// Build validates and resolves the configs, fetches every pinned input,
// builds the image's steps and publishes the cards into dist. Nothing is
// written to dist unless everything before succeeded. The resolved configs
// (the nodes' secrets in clear) are removed once the images are built.
func (j Image) Build(ctx context.Context, dist string) error {
	p, r := j.Plan, j.Runner
	resolved := filepath.Join(r.Cache, "configs", "resolved")
	defer os.RemoveAll(resolved)
	trust := filepath.Join(r.Cache, "configs", "trust")
	if err := writeTrust(trust, j.Trust); err != nil {
		return err
	}
	var cluster *nodeconfig.Cluster
	var err error
	if j.ConfigDir == NoCluster {
		cluster, err = ValidateConfig(NoCluster, j.Out)
		if err == nil {
			err = os.MkdirAll(resolved, 0o700)
		}
	} else {
		cluster, err = j.Resolve.configs(j.ConfigDir, resolved, j.Env, j.Out)
	}
	if err != nil {
		return err
	}
	clusterImages, ownImages := "", []images.Image(nil)
	if j.ConfigDir != NoCluster {
		if clusterImages, ownImages, err = images.Cluster(j.ConfigDir); err != nil {
			return err
		}
	}
	cards, err := j.cards(cluster, resolved, trust, clusterImages)
	if err != nil {
		return err
	}
	var steps []*step.Step
	for _, c := range cards {
		steps = append(steps, c.step)
	}
	if err := r.Prefetch(ctx, steps...); err != nil {
		return err
	}
	m, sbom, err := describe(ctx, p, r, ownImages)
	if err != nil {
		return err
	}
	var out []Card
	for _, c := range cards {
		dir, err := r.Build(ctx, c.step)
		if err != nil {
			return err
		}
		cm := m
		cm.Nodes = c.nodes
		out = append(out, Card{Image: filepath.Join(dir, p.ImageName()), Name: c.name, Manifest: cm})
	}
	r.Log.Debug("images built; publishing")
	if err := Publish(ctx, dist, out, sbom); err != nil {
		return err
	}
	for _, c := range out {
		fmt.Fprintf(j.Out, "%s: %d node config(s), kernel %s (%s), k3s: %s\n", filepath.Join(dist, c.Name),
			len(c.Manifest.Nodes), m.Kernel.Release, m.Kernel.Flavour, m.K3s)
	}
	if j.ReleaseURL == "" {
		return nil
	}
	if len(out) != 1 || j.ConfigDir != NoCluster {
		return errors.New("RELEASE_URL: a Raspberry Pi Imager list names a release card (CONFIG_DIR=none), one for every Pi; these cards hold nodes' configs")
	}
	return WriteImagerList(dist, j.ReleaseURL, out[0].Name, time.Now().UTC().Format("2006-01-02"))
}

// writeTrust makes dir hold one <id>.pub per key, and nothing else.
func writeTrust(dir string, keys []string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, k := range keys {
		var pub minisign.PublicKey
		if err := pub.UnmarshalText([]byte(k)); err != nil {
			return fmt.Errorf("an upgrade key to trust: %w", err)
		}
		text, err := pub.MarshalText()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016X.pub", pub.ID())), append(text, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// card is one image step of a job.
type card struct {
	name  string
	step  *step.Step
	nodes []ManifestNode
}

// cards are the job's image steps: one for the cluster, or with PerNode
// one per node config, each from a directory holding that config alone.
func (j Image) cards(cluster *nodeconfig.Cluster, resolved, trust, clusterImages string) ([]card, error) {
	nodes := make([]ManifestNode, 0, len(cluster.Nodes))
	for _, n := range cluster.Nodes {
		nodes = append(nodes, ManifestNode{MAC: n.Name(), Hostname: n.Doc.Config.Hostname, Role: n.Doc.Config.Role()})
	}
	if !j.PerNode {
		return []card{{name: j.Plan.ImageName(), step: j.Plan.Image(resolved, trust, clusterImages), nodes: nodes}}, nil
	}
	if len(nodes) == 0 {
		return nil, errors.New("one card per node, but the cluster has no node configs")
	}
	var out []card
	for i, n := range cluster.Nodes {
		dir := filepath.Join(resolved, "nodes", n.Name())
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.Rename(filepath.Join(resolved, n.Name()+".yaml"), filepath.Join(dir, n.Name()+".yaml")); err != nil {
			return nil, err
		}
		name := n.Doc.Config.Hostname
		if name == "" {
			name = strings.ReplaceAll(n.Name(), ":", "-") // a file name on any system
		}
		out = append(out, card{name: name + ".img", step: j.Plan.Image(dir, trust, clusterImages), nodes: nodes[i : i+1]})
	}
	return out, nil
}

// describe makes the image's manifest and SBOM from its steps' outputs
// (cached by now: these builds return at once) and the cluster's own
// images.
func describe(ctx context.Context, p *plan.Plan, r *run.Runner, own []images.Image) (Manifest, []byte, error) {
	m := Manifest{Version: p.Version}
	if p.Images != nil {
		iout, err := r.Build(ctx, p.Images)
		if err != nil {
			return m, nil, err
		}
		if m.Images, err = images.Staged(iout); err != nil {
			return m, nil, err
		}
	}
	m.Images = append(m.Images, own...)
	kout, err := r.Build(ctx, p.Kernel)
	if err != nil {
		return m, nil, err
	}
	rel, err := os.ReadFile(filepath.Join(kout, "kernel.release"))
	if err != nil {
		return m, nil, err
	}
	cfgSum, err := step.FileDigest(filepath.Join(kout, "config"))
	if err != nil {
		return m, nil, err
	}
	m.Kernel = ManifestKernel{Flavour: p.Flavour, Release: strings.TrimSpace(string(rel)), ConfigSHA256: cfgSum}
	rout, err := r.Build(ctx, p.Rootfs)
	if err != nil {
		return m, nil, err
	}
	release, err := Release(filepath.Join(rout, "k3os-release"))
	if err != nil {
		return m, nil, err
	}
	m.K3s = release["K3S"]
	bout, err := r.Build(ctx, p.RootfsBase)
	if err != nil {
		return m, nil, err
	}
	pkgs, err := ReadPackagesTSV(filepath.Join(bout, "packages.tsv"))
	if err != nil {
		return m, nil, err
	}
	pkgs = append(pkgs, SBOMPackage{Name: "k3os-agent", Version: p.Version, Supplier: "Organization: k3os-rpi4", License: "Apache-2.0"},
		SBOMPackage{Name: "linux", Version: m.Kernel.Release, Supplier: "Organization: Debian"})
	if m.K3s != settings.K3sNone {
		pkgs = append(pkgs, SBOMPackage{Name: "k3s", Version: m.K3s, Supplier: "Organization: k3s-io", License: "Apache-2.0"})
	}
	for _, im := range m.Images {
		pkgs = append(pkgs, SBOMPackage{Name: im.Name, Version: im.Digest, Supplier: "NOASSERTION"})
	}
	sbom, err := SBOM(p.ImageName(), p.Version, pkgs)
	return m, sbom, err
}
