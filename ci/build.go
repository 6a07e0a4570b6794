package ci

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// BuildImage is the main job: validate and resolve the cluster config, build
// every step of the image, and publish it into dist. Nothing is written to
// dist unless everything before succeeded.
func BuildImage(ctx context.Context, p *Plan, r *Runner, configDir, dist string, w io.Writer) error {
	resolved := filepath.Join(r.Cache, "configs", "resolved")
	cluster, err := ResolveConfigs(configDir, resolved, w)
	if err != nil {
		return err
	}
	img, err := p.Image(resolved)
	if err != nil {
		return err
	}
	out, err := r.Build(ctx, img)
	if err != nil {
		return err
	}
	r.Log.Debug("image built; publishing")
	m := Manifest{Image: p.ImageName(), Version: p.Version}
	for _, n := range cluster.Nodes {
		m.Nodes = append(m.Nodes, ManifestNode{MAC: n.Name(), Hostname: n.Doc.Config.Hostname, Role: n.Doc.Config.Role()})
	}
	// The steps are cached: these return at once.
	kernel, _ := p.Kernel()
	kout, err := r.Build(ctx, kernel)
	if err != nil {
		return err
	}
	rel, _ := os.ReadFile(filepath.Join(kout, "kernel.release"))
	m.Kernel = ManifestKernel{Flavour: p.KernelFlavour, Release: strings.TrimSpace(string(rel))}
	rootfs, _ := p.Rootfs()
	rout, err := r.Build(ctx, rootfs)
	if err != nil {
		return err
	}
	m.K3s = Release(filepath.Join(rout, "k3os-release"))["K3S"]
	base, _ := p.RootfsBase()
	bout, err := r.Build(ctx, base)
	if err != nil {
		return err
	}
	pkgs, err := ReadPackagesTSV(filepath.Join(bout, "packages.tsv"))
	if err != nil {
		return err
	}
	pkgs = append(pkgs, SBOMPackage{Name: "k3os-agent", Version: p.Version, Supplier: "Organization: k3os-rpi4", License: "Apache-2.0"},
		SBOMPackage{Name: "linux", Version: m.Kernel.Release, Supplier: "Organization: Debian"})
	if m.K3s != K3sNone {
		pkgs = append(pkgs, SBOMPackage{Name: "k3s", Version: m.K3s, Supplier: "Organization: k3s-io", License: "Apache-2.0"})
	}
	sbom, err := SBOM(p.ImageName(), p.Version, pkgs)
	if err != nil {
		return err
	}
	r.Log.Debug("manifest and SBOM ready")
	if err := Publish(ctx, dist, filepath.Join(out, p.ImageName()), m, sbom); err != nil {
		return err
	}
	r.Log.Debug("published")
	fmt.Fprintf(w, "%s: %d node config(s), kernel %s (%s), k3s: %s\n", filepath.Join(dist, p.ImageName()),
		len(m.Nodes), m.Kernel.Release, m.Kernel.Flavour, m.K3s)
	return nil
}
