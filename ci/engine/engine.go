// Package engine picks the engine a build runs on: ENGINE=host, dagger, or
// auto (the default: Dagger when an engine can be had, else the host engine).
package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/ci"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine/dagger"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine/host"
)

// Select returns the engine named by choice ("" means auto), and the
// function that releases it. Both engines pin the toolchains to the
// project's ci/toolchains.lock.
func Select(ctx context.Context, choice, project, cache string, log *logrus.Logger) (ci.Engine, func() error, error) {
	h, err := Host(project, cache, log)
	if err != nil {
		return nil, nil, err
	}
	none := func() error { return nil }
	switch choice {
	case "host":
		return h, none, nil
	case "", "auto":
		if err := dagger.Available(ctx); err != nil {
			log.WithField("reason", err.Error()).Debug("no Dagger engine; using the host engine")
			return h, none, nil
		}
	case "dagger":
		if err := dagger.Available(ctx); err != nil {
			return nil, nil, fmt.Errorf("ENGINE=dagger: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("ENGINE=%s: use host, dagger or auto", choice)
	}
	d := &dagger.Engine{Base: dagger.Base(getenv("DAGGER_BASE", string(dagger.BaseRegistry))), Log: log, Tarball: h.OCITarball, Pins: h.Pins}
	if d.Base == dagger.BaseImport {
		// No registry, so no outside network either: fetch on the host.
		d.Fetch = h
	}
	log.WithField("base", d.Base).Info("dagger engine")
	return d, d.Close, nil
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Host returns the host engine with the project's toolchain pins.
func Host(project, cache string, log *logrus.Logger) (*host.Engine, error) {
	pins, err := ci.ReadToolchainLock(filepath.Join(project, ci.ToolchainLockFile))
	if err != nil {
		return nil, err
	}
	h := host.New(cache, log)
	h.Pins = pins
	return h, nil
}
