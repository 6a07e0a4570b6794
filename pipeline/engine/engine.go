// Package engine picks the engine a build runs on: host, dagger, or auto
// (Dagger when an engine can be had, else the host engine).
package engine

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/dagger"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Config is what Select needs to know.
type Config struct {
	// Choice is "auto", "host" or "dagger".
	Choice string
	// DaggerBase is where Dagger's containers come from.
	DaggerBase dagger.Base
	// Dagger says how the SDK finds an engine.
	Dagger dagger.Env
	// Cache is the build cache (tools roots, volumes).
	Cache string
	// Mirror is the Debian mirror the toolchains come from.
	Mirror string
	// Pins fix every toolchain's packages (pipeline/toolchains.lock).
	Pins step.ToolchainLock
}

// Select returns the engine the config names and the function that
// releases it. Both engines pin the toolchains to c.Pins.
func Select(ctx context.Context, c Config, log *logrus.Logger) (step.Engine, func() error, error) {
	h := Host(c, log)
	none := func() error { return nil }
	switch c.Choice {
	case "host":
		return h, none, nil
	case "auto":
		if err := dagger.Available(ctx, c.Dagger); err != nil {
			log.WithField("reason", err.Error()).Debug("no Dagger engine; using the host engine")
			return h, none, nil
		}
	case "dagger":
		if err := dagger.Available(ctx, c.Dagger); err != nil {
			return nil, nil, fmt.Errorf("ENGINE=dagger: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("ENGINE=%s: use host, dagger or auto", c.Choice)
	}
	d := &dagger.Engine{Base: c.DaggerBase, Mirror: c.Mirror, Log: log, Tarball: h.OCITarball, Pins: c.Pins}
	if d.Base == dagger.BaseImport {
		// No registry, so no outside network either: fetch on the host.
		d.Fetch = h
	}
	log.WithField("base", d.Base).Info("dagger engine")
	return d, d.Close, nil
}

// Host returns the host engine of the config: also the one that runs
// QEMU for the boot test, whatever engine builds.
func Host(c Config, log *logrus.Logger) *host.Engine {
	return &host.Engine{Cache: c.Cache, Mirror: c.Mirror, Pins: c.Pins, Log: log}
}
