package dagger_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/dagger"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/enginetest"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// realEngines returns a real Dagger engine (import base, as on a machine
// without a registry) and the host engine the targets use. Engine-backed
// tests need a running engine and the K3OS_DAGGER_TEST switch.
func realEngines(t *testing.T) (*dagger.Engine, *host.Engine, *settings.Settings) {
	t.Helper()
	if os.Getenv("K3OS_DAGGER_TEST") == "" {
		t.Skip("engine-backed: set K3OS_DAGGER_TEST=1 with _EXPERIMENTAL_DAGGER_RUNNER_HOST and " +
			"_EXPERIMENTAL_DAGGER_CLI_BIN naming a running engine (docs/engines.md)")
	}
	if os.Getuid() != 0 {
		t.Skip("the host engine's tools roots need root")
	}
	project, _ := filepath.Abs("../../..")
	s, err := settings.Load(project, os.LookupEnv, true)
	if err != nil {
		t.Fatal(err)
	}
	env := dagger.Env{SessionPort: s.Dagger.SessionPort, RunnerHost: s.Dagger.RunnerHost, CLIBin: s.Dagger.CLIBin}
	if err := dagger.Available(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	pins, err := plan.ReadToolchainLock(filepath.Join(project, plan.ToolchainLockFile))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	h := engine.Host(engine.Config{Cache: s.Cache, Mirror: s.Mirror, Pins: pins}, log)
	d := &dagger.Engine{Base: dagger.BaseImport, Mirror: s.Mirror, Tarball: h.OCITarball, Fetch: h, Log: log, Pins: pins}
	t.Cleanup(func() { d.Close() })
	return d, h, s
}

// The step contract, on a real Dagger engine.
func TestContract(t *testing.T) {
	d, _, _ := realEngines(t)
	enginetest.Run(t, d, plan.GoToolchain)
}

// Every step of `go tool mage image` (KERNEL=debian, K3S=none) through a
// real Dagger engine and through the host engine: each declared output must
// be the same bytes (files) or the same tree (directories: names, modes,
// contents). It takes minutes.
func TestStepsMatchHostEngine(t *testing.T) {
	d, h, s := realEngines(t)
	ctx := context.Background()
	log := d.Log
	daggerCache := filepath.Join(os.TempDir(), "k3os-dagger-test-cache") // kept: a rerun reuses its outputs
	hr := &run.Runner{Engine: h, Cache: s.Cache, Project: s.Project, Log: log}
	dr := &run.Runner{Engine: d, Cache: daggerCache, Project: s.Project, Log: log}

	p, err := plan.New(plan.Options{Project: s.Project, Version: s.Version, Flavour: settings.KernelDebian, K3s: settings.K3sNone, Mirror: s.Mirror})
	if err != nil {
		t.Fatal(err)
	}
	configs := filepath.Join(t.TempDir(), "config")
	if _, err := release.ResolveConfigs(filepath.Join(s.Project, "config"), configs, nil, os.Stderr); err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Steps(configs, t.TempDir()) {
		if st.Network {
			continue // run by the host engine under both
		}
		t.Run(st.Name, func(t *testing.T) {
			ho, err := hr.Build(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			do, err := dr.Build(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range st.Outputs {
				hd, err := run.TreeDigest(filepath.Join(ho, o))
				if err != nil {
					t.Fatal(err)
				}
				dd, err := run.TreeDigest(filepath.Join(do, o))
				if err != nil {
					t.Fatal(err)
				}
				if hd != dd {
					t.Errorf("%s/%s differs: host %s, dagger %s", st.Name, o, hd[:12], dd[:12])
				}
			}
		})
	}
}
