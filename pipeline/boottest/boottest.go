// Package boottest builds an image for the boot test's cluster and boots
// it in QEMU through the vmtest cases, with QEMU from the VM toolchain.
package boottest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/settings"
	"github.com/k3os-rpi/k3os-rpi4/vmtest"
)

// Config is one boot test run.
type Config struct {
	Plan   plan.Options
	Runner *run.Runner
	// Host runs QEMU and PostgreSQL, whatever engine builds.
	Host *host.Engine
	Dist string
	// Cases, Keep and RequireK3s are the suite's (vmtest.Suite).
	Cases            []string
	Keep, RequireK3s bool
	Out              io.Writer
}

// Run builds the test image into dist/test and runs the boot cases. The
// raspi4b case needs a kernel with the Pi's drivers: when the plan's has
// none (KERNEL=reduced), it boots the same image with Debian's kernel.
func Run(ctx context.Context, c Config) error {
	if _, err := vmtest.Select(c.Cases); err != nil {
		return err
	}
	p, err := plan.New(c.Plan)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(filepath.Join(c.Dist, "test"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	key, err := vmtest.NewKey()
	if err != nil {
		return err
	}
	pgPort, err := vmtest.FreePort()
	if err != nil {
		return err
	}
	configs := filepath.Join(dir, "config")
	cluster := vmtest.Cluster{Key: key, K3sVersion: p.K3sVersion, PostgresPort: pgPort}
	if err := cluster.Write(configs); err != nil {
		return err
	}
	build := func(p *plan.Plan, dist string) error {
		return release.Image{Plan: p, Runner: c.Runner, ConfigDir: configs, Out: c.Out}.Build(ctx, dist)
	}
	if err := build(p, dir); err != nil {
		return err
	}
	piImage := filepath.Join(dir, p.ImageName())
	if p.Flavour == settings.KernelReduced {
		o := c.Plan
		o.Flavour = settings.KernelDebian
		pp, err := plan.New(o)
		if err != nil {
			return err
		}
		if err := build(pp, filepath.Join(dir, "pi")); err != nil {
			return err
		}
		piImage = filepath.Join(dir, "pi", pp.ImageName())
	}
	agent, err := c.Runner.Build(ctx, p.Agent)
	if err != nil {
		return err
	}
	s := &vmtest.Suite{
		Run: func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error) {
			return c.Host.Command(ctx, plan.VMToolchain, binds, argv...)
		},
		RunPostgres: func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error) {
			return c.Host.Command(ctx, plan.PostgresToolchain, binds, argv...)
		},
		Cluster:     cluster,
		Cases:       c.Cases,
		Keep:        c.Keep,
		RequireK3s:  c.RequireK3s,
		Dir:         dir,
		Image:       filepath.Join(dir, p.ImageName()),
		PiImage:     piImage,
		Key:         key,
		K3s:         p.K3sDesc != settings.K3sNone,
		AgentBinary: filepath.Join(agent, "k3os-agent"),
		Out:         c.Out,
	}
	if err := s.All(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "boot test passed; consoles and timings in %s\n", dir)
	return nil
}
