// Package boottest builds an image for the boot test's cluster and boots
// it in QEMU through the vmtest cases, with QEMU from the VM toolchain.
package boottest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"aead.dev/minisign"

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
	// AllPowerCuts runs every power-cut point (vmtest.Upgrades).
	AllPowerCuts bool
	Out          io.Writer
}

// Run builds the test image into dist/test and runs the boot cases. The
// raspi4b case needs a kernel with the Pi's drivers: when the plan's has
// none (KERNEL=reduced), it boots the same image with the pi kernel.
func Run(ctx context.Context, c Config) error {
	cases, err := vmtest.Select(c.Cases)
	if err != nil {
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
	cluster := vmtest.Cluster{Key: key, K3sVersion: p.K3sVersion, PostgresPort: pgPort,
		ServerToken: "vmtest-server-" + randomHex(), AgentToken: "vmtest-agent-" + randomHex()}
	if err := cluster.Write(configs); err != nil {
		return err
	}
	// The test's own upgrade key: the image trusts it, the bundles of the
	// upgrade cases are signed with it.
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return err
	}
	trust, err := pub.MarshalText()
	if err != nil {
		return err
	}
	build := func(p *plan.Plan, dist string) error {
		return release.Image{Plan: p, Runner: c.Runner, ConfigDir: configs, Trust: []string{string(trust)}, Out: c.Out}.Build(ctx, dist)
	}
	if err := build(p, dir); err != nil {
		return err
	}
	piImage := filepath.Join(dir, p.ImageName())
	if p.Flavour == settings.KernelReduced {
		o := c.Plan
		o.Flavour = settings.KernelPi
		pp, err := plan.New(o)
		if err != nil {
			return err
		}
		if err := build(pp, filepath.Join(dir, "pi")); err != nil {
			return err
		}
		piImage = filepath.Join(dir, "pi", pp.ImageName())
	}
	var ups *vmtest.Upgrades
	if slices.Contains(cases, "upgrade") || slices.Contains(cases, "power-cuts") {
		if ups, err = upgrades(ctx, c, p, priv, filepath.Join(dir, "bundles")); err != nil {
			return err
		}
		ups.AllPowerCuts = c.AllPowerCuts
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
		Upgrades:    ups,
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

// upgrades builds the upgrade cases' second version: the same steps with
// another version and a kernel release of its own, as a signed bundle.
func upgrades(ctx context.Context, c Config, v1 *plan.Plan, key minisign.PrivateKey, dir string) (*vmtest.Upgrades, error) {
	o := c.Plan
	o.Version, o.KernelLocalVersion = v1.Version+".1", "-vmtest2"
	v2, err := plan.New(o)
	if err != nil {
		return nil, err
	}
	bundles, err := release.Upgrade{Plan: v2, Runner: c.Runner, Content: release.ContentSystem, Key: key, Out: c.Out}.Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	u := &vmtest.Upgrades{V1: v1.Version, V2: v2.Version, Bundle: bundles[0].File, Key: key}
	for _, k := range []struct {
		p   *plan.Plan
		rel *string
	}{{v1, &u.V1Kernel}, {v2, &u.V2Kernel}} {
		out, err := c.Runner.Build(ctx, k.p.Kernel)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(out, "kernel.release"))
		if err != nil {
			return nil, err
		}
		*k.rel = strings.TrimSpace(string(b))
	}
	return u, nil
}

// randomHex is 16 random hex digits: a token no file of the image holds by
// chance.
func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
