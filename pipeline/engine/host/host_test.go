package host_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/enginetest"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// hostEngine is the host engine as the targets make it: the project's
// settings and toolchain pins, tools roots shared with real builds.
func hostEngine(t *testing.T) (*host.Engine, *settings.Settings) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the host engine's tools roots need root: run as root (CI does)")
	}
	project, _ := filepath.Abs("../../..")
	s, err := settings.Load(project, os.LookupEnv, true)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := plan.ReadToolchainLock(filepath.Join(project, plan.ToolchainLockFile))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return engine.Host(engine.Config{Cache: s.Cache, Mirror: s.Mirror, Pins: pins}, log), s
}

// The step contract, on the host engine.
func TestContract(t *testing.T) {
	e, _ := hostEngine(t)
	enginetest.Run(t, e, plan.GoToolchain)
}

// The agent step through the host engine: built, then served from the
// cache in under 2 s, and rebuilt from scratch to the same bytes.
func TestAgentStepCachedAndReproducible(t *testing.T) {
	e, s := hostEngine(t)
	ctx := context.Background()
	p, err := plan.New(plan.Options{Project: s.Project, Version: s.Version, Flavour: s.Kernel, K3s: settings.K3sNone, Mirror: s.Mirror, GoEnv: s.GoEnv})
	if err != nil {
		t.Fatal(err)
	}
	build := func(cache string) ([]byte, time.Duration) {
		t.Helper()
		r := &run.Runner{Engine: e, Cache: cache, Project: s.Project, Log: e.Log}
		start := time.Now()
		out, err := r.Build(ctx, p.Agent)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, "k3os-agent"))
		if err != nil {
			t.Fatal(err)
		}
		return b, time.Since(start)
	}
	cache := t.TempDir()
	first, took := build(cache)
	t.Logf("cold build: %s", took)
	again, took := build(cache)
	if took > 2*time.Second {
		t.Errorf("cached build took %s, want < 2s", took)
	}
	if !bytes.Equal(first, again) {
		t.Error("cached output differs")
	}
	rebuilt, _ := build(t.TempDir())
	if !bytes.Equal(first, rebuilt) {
		t.Error("a rebuild from scratch gave different bytes: the agent build is not reproducible")
	}
}
