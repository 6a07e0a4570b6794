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

	"github.com/k3os-rpi/k3os-rpi4/ci"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/vmtest"
)

// Run builds the test image into dist/test and runs every boot case. The
// raspi4b case needs a kernel with the Pi's drivers: when the plan's has
// none (KERNEL=reduced), it boots the same image with Debian's kernel.
func Run(ctx context.Context, p *ci.Plan, r *ci.Runner, h *host.Engine, dist string, w io.Writer) error {
	dir, err := filepath.Abs(filepath.Join(dist, "test"))
	if err != nil {
		return err
	}
	if _, err := vmtest.SelectedCases(); err != nil {
		return err
	}
	os.RemoveAll(dir)
	key, err := vmtest.NewKey()
	if err != nil {
		return err
	}
	pgPort, err := vmtest.FreePort()
	if err != nil {
		return err
	}
	cluster := filepath.Join(dir, "config")
	c := vmtest.Cluster{Key: key, K3sVersion: p.K3sVersion(), PostgresPort: pgPort}
	if err := c.Write(cluster); err != nil {
		return err
	}
	if err := ci.BuildImage(ctx, p, r, cluster, dir, w); err != nil {
		return err
	}
	piImage := filepath.Join(dir, p.ImageName())
	if p.KernelFlavour == ci.KernelReduced {
		pp := p.WithKernel(ci.KernelDebian)
		if err := ci.BuildImage(ctx, pp, r, cluster, filepath.Join(dir, "pi"), w); err != nil {
			return err
		}
		piImage = filepath.Join(dir, "pi", pp.ImageName())
	}
	agent, err := r.Build(ctx, p.Agent())
	if err != nil {
		return err
	}
	rootfs, err := p.Rootfs()
	if err != nil {
		return err
	}
	rout, err := r.Build(ctx, rootfs)
	if err != nil {
		return err
	}
	k3s := ci.Release(filepath.Join(rout, "k3os-release"))["K3S"]
	s := &vmtest.Suite{
		Run: func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error) {
			return h.Command(ctx, ci.VMToolchain, binds, argv...)
		},
		RunPostgres: func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error) {
			return h.Command(ctx, ci.PostgresToolchain, binds, argv...)
		},
		PostgresPort: pgPort,
		Dir:          dir,
		Image:        filepath.Join(dir, p.ImageName()),
		PiImage:      piImage,
		Key:          key,
		K3s:          k3s != "" && k3s != ci.K3sNone,
		AgentBinary:  filepath.Join(agent, "k3os-agent"),
		Out:          w,
	}
	if err := s.All(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "boot test passed; consoles and timings in %s\n", dir)
	return nil
}
