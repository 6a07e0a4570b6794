package dagger_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/ci"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine/dagger"
)

// Every step of `go tool mage image` (KERNEL=debian, K3S=none) through a
// real Dagger engine and through the host engine: each declared output must
// be the same bytes (files) or the same tree (directories: names, modes,
// contents). Engine-backed: it needs a running engine and the
// K3OS_DAGGER_TEST switch, and takes minutes.
func TestStepsMatchHostEngine(t *testing.T) {
	if os.Getenv("K3OS_DAGGER_TEST") == "" {
		t.Skip("engine-backed: set K3OS_DAGGER_TEST=1 with _EXPERIMENTAL_DAGGER_RUNNER_HOST and " +
			"_EXPERIMENTAL_DAGGER_CLI_BIN naming a running engine (docs/engines.md)")
	}
	ctx := context.Background()
	if err := dagger.Available(ctx); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		t.Skip("the host engine's tools roots need root")
	}
	project, _ := filepath.Abs("../../..")
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	hostCache := ci.CacheRoot()
	daggerCache := os.Getenv("K3OS_DAGGER_CACHE") // reuse an earlier run's outputs
	if daggerCache == "" {
		daggerCache = filepath.Join(os.TempDir(), "k3os-dagger-test-cache")
	}
	// The host engine as every target makes it: pinned to ci/toolchains.lock.
	h, err := engine.Host(project, hostCache, log)
	if err != nil {
		t.Fatal(err)
	}
	d := &dagger.Engine{Base: dagger.BaseImport, Tarball: h.OCITarball, Fetch: h, Log: log}
	defer d.Close()
	hr := &ci.Runner{Engine: h, Cache: hostCache, Project: project, Log: log}
	dr := &ci.Runner{Engine: d, Cache: daggerCache, Project: project, Log: log}

	t.Setenv("K3S", ci.K3sNone)
	p := ci.NewPlan(project).WithKernel(ci.KernelDebian)
	configs := filepath.Join(t.TempDir(), "config")
	if _, err := ci.ResolveConfigs(filepath.Join(project, "config"), configs, os.Stderr); err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(configs)
	if err != nil {
		t.Fatal(err)
	}
	kernel, _ := p.Kernel()
	boot, _ := p.Boot()
	base, _ := p.RootfsBase()
	rootfs, _ := p.Rootfs()
	for _, s := range []*ci.Step{p.Agent(), kernel, boot, base, rootfs, img} {
		t.Run(s.Name, func(t *testing.T) {
			ho, err := hr.Build(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			do, err := dr.Build(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range s.Outputs {
				hd, err := ci.TreeDigest(filepath.Join(ho, o))
				if err != nil {
					t.Fatal(err)
				}
				dd, err := ci.TreeDigest(filepath.Join(do, o))
				if err != nil {
					t.Fatal(err)
				}
				if hd != dd {
					t.Errorf("%s/%s differs: host %s, dagger %s", s.Name, o, hd[:12], dd[:12])
				}
			}
		})
	}
}
