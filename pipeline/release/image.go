// Package release is the main job and what it publishes: it validates and
// resolves the cluster's configs, builds the image's steps, and puts the
// image into dist/ with its compressed copy, manifest, SBOM and checksums.
package release

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// Image is one build of the SD-card image.
type Image struct {
	Plan   *plan.Plan
	Runner *run.Runner
	// ConfigDir is the cluster's config directory; Env resolves its
	// ${NAME} secret references.
	ConfigDir string
	Env       nodeconfig.Lookup
	// Out receives the validation report and the closing line.
	Out io.Writer
}

// Build validates and resolves the configs, fetches every pinned input,
// builds the image's steps and publishes the image into dist. Nothing is
// written to dist unless everything before succeeded.
func (j Image) Build(ctx context.Context, dist string) error {
	p, r := j.Plan, j.Runner
	resolved := filepath.Join(r.Cache, "configs", "resolved")
	cluster, err := ResolveConfigs(j.ConfigDir, resolved, j.Env, j.Out)
	if err != nil {
		return err
	}
	img := p.Image(resolved)
	if err := r.Prefetch(ctx, img); err != nil {
		return err
	}
	out, err := r.Build(ctx, img)
	if err != nil {
		return err
	}
	r.Log.Debug("image built; publishing")
	m, sbom, err := describe(ctx, p, r, cluster)
	if err != nil {
		return err
	}
	if err := Publish(ctx, dist, filepath.Join(out, p.ImageName()), m, sbom); err != nil {
		return err
	}
	fmt.Fprintf(j.Out, "%s: %d node config(s), kernel %s (%s), k3s: %s\n", filepath.Join(dist, p.ImageName()),
		len(m.Nodes), m.Kernel.Release, m.Kernel.Flavour, m.K3s)
	return nil
}

// describe makes the image's manifest and SBOM from its steps' outputs
// (cached by now: these builds return at once).
func describe(ctx context.Context, p *plan.Plan, r *run.Runner, cluster *nodeconfig.Cluster) (Manifest, []byte, error) {
	m := Manifest{Image: p.ImageName(), Version: p.Version}
	for _, n := range cluster.Nodes {
		m.Nodes = append(m.Nodes, ManifestNode{MAC: n.Name(), Hostname: n.Doc.Config.Hostname, Role: n.Doc.Config.Role()})
	}
	kout, err := r.Build(ctx, p.Kernel)
	if err != nil {
		return m, nil, err
	}
	rel, err := os.ReadFile(filepath.Join(kout, "kernel.release"))
	if err != nil {
		return m, nil, err
	}
	m.Kernel = ManifestKernel{Flavour: p.Flavour, Release: strings.TrimSpace(string(rel))}
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
	sbom, err := SBOM(p.ImageName(), p.Version, pkgs)
	return m, sbom, err
}
