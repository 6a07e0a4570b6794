package host

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/ci"
)

func project(t *testing.T) string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..", "..")
}

// The agent step through the host engine: built, then served from the
// cache in under 2 s, and rebuilt from scratch to the same bytes.
func TestAgentStepCachedAndReproducible(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the host engine's tools roots need root: run as root (CI does)")
	}
	ctx := context.Background()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	eng := New(ci.CacheRoot(), log) // tools roots are shared with real builds
	pins, err := ci.ReadToolchainLock(filepath.Join(project(t), ci.ToolchainLockFile))
	if err != nil {
		t.Fatal(err)
	}
	eng.Pins = pins
	build := func(cache string) ([]byte, time.Duration) {
		t.Helper()
		r := &ci.Runner{Engine: eng, Cache: cache, Project: project(t), Log: log}
		start := time.Now()
		out, err := r.Build(ctx, ci.NewPlan(project(t)).Agent())
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
