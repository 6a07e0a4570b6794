//go:build mage

// Targets of the k3OS Raspberry Pi 4 image build. Each is a few lines over
// the ci and nodeconfig packages; run `go tool mage -l` to list them.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/ci"
	"github.com/k3os-rpi/k3os-rpi4/ci/boottest"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine"
	"github.com/k3os-rpi/k3os-rpi4/ci/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/flash"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// pipeline returns the plan and a runner on the engine $ENGINE selects.
// Call the returned function when done.
func pipeline(ctx context.Context) (*ci.Plan, *ci.Runner, func() error, error) {
	log := ci.NewLogger(mg.Verbose())
	cache := ci.CacheRoot()
	wd, _ := os.Getwd()
	eng, closeEngine, err := engine.Select(ctx, os.Getenv("ENGINE"), wd, cache, log)
	if err != nil {
		return nil, nil, nil, err
	}
	r := &ci.Runner{Engine: eng, Cache: cache, Project: wd, Log: log}
	if t := ci.Terminal(); t != nil {
		r.Progress = t
	}
	log.WithFields(logrus.Fields{"engine": eng.Name(), "cache": cache}).Info("pipeline")
	return ci.NewPlan(wd), r, closeEngine, nil
}

// Agent builds the on-device agent (static arm64) into dist/k3os-agent.
func Agent(ctx context.Context) error {
	return buildAndExport(ctx, func(p *ci.Plan) (*ci.Step, error) { return p.Agent(), nil },
		map[string]string{"k3os-agent": "dist/k3os-agent"})
}

// buildAndExport builds one step of the plan and copies some of its
// outputs (output name -> destination) into place.
func buildAndExport(ctx context.Context, step func(*ci.Plan) (*ci.Step, error), files map[string]string) error {
	p, r, done, err := pipeline(ctx)
	if err != nil {
		return err
	}
	defer done()
	s, err := step(p)
	if err != nil {
		return err
	}
	out, err := r.Build(ctx, s)
	if err != nil {
		return err
	}
	return ci.Export(out, files)
}

// Clean removes dist/ and the build cache (steps, tools roots, downloads).
func Clean() error {
	for _, d := range []string{"dist", ci.CacheRoot()} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// Cache holds the build cache's targets.
type Cache mg.Namespace

// Prune removes every cached step output but the most recently used of each step (clean removes them all).
func (Cache) Prune() error {
	n, size, err := ci.PruneSteps(ci.CacheRoot())
	fmt.Printf("removed %d step outputs, %d MiB\n", n, size>>20)
	return err
}

func configDir() string {
	if d := os.Getenv("CONFIG_DIR"); d != "" {
		return d
	}
	return "config"
}

// Validate checks config/ (or $CONFIG_DIR) and prints each problem as file:line:col.
func Validate() error {
	_, err := ci.ValidateConfig(configDir(), os.Stdout)
	return err
}

// Schema writes the node config JSON Schema to dist/k3os-config.schema.json.
func Schema() error {
	b, err := nodeconfig.JSONSchema()
	if err != nil {
		return err
	}
	return ci.WriteFileAtomic(filepath.Join("dist", "k3os-config.schema.json"), b, 0o644)
}

// Test is the whole proof CI runs: vet, unit tests, a bounded fuzz run, config validation, then the boot test (see boottest).
func Test(ctx context.Context) error {
	for _, args := range [][]string{
		{"vet", "./..."},
		{"test", "-count=1", "./..."},
		{"test", "-run=^$", "-fuzz=FuzzParse", "-fuzztime=20s", "./nodeconfig"},
	} {
		if err := sh.RunV("go", args...); err != nil {
			return err
		}
	}
	if err := Validate(); err != nil {
		return err
	}
	return Boottest(ctx)
}

// Boottest builds an image for a test cluster (K3S=none, KERNEL=reduced unless set) and boots it in QEMU: virt by MAC, a second boot, default.yaml, raspi4b; with k3s, Ready on one node, two nodes and a PostgreSQL datastore.
func Boottest(ctx context.Context) error {
	if os.Getenv("K3S") == "" {
		os.Setenv("K3S", ci.K3sNone)
	}
	if os.Getenv("KERNEL") == "" {
		os.Setenv("KERNEL", ci.KernelReduced)
	}
	p, r, done, err := pipeline(ctx)
	if err != nil {
		return err
	}
	defer done()
	h, err := engine.Host(r.Project, r.Cache, r.Log)
	if err != nil {
		return err
	}
	return boottest.Run(ctx, p, r, h, "dist", os.Stdout)
}

// Rootfs holds the root filesystem targets besides the build itself.
type Rootfs mg.Namespace

// Lock resolves rootfs/packages.list against the mirror into rootfs/packages.lock.
func (Rootfs) Lock(ctx context.Context) error {
	return buildAndExport(ctx, func(p *ci.Plan) (*ci.Step, error) { return p.RootfsLock(), nil },
		map[string]string{"packages.lock": "rootfs/packages.lock"})
}

// RootFS builds the root filesystem (dist/rootfs.squashfs) from rootfs/packages.lock, the agent, overlay/ and k3s ($K3S).
func RootFS(ctx context.Context) error {
	return buildAndExport(ctx, (*ci.Plan).Rootfs, map[string]string{"rootfs.squashfs": "dist/rootfs.squashfs"})
}

// K3s holds the k3s input targets.
type K3s mg.Namespace

// Pin pins the files of a local k3s, K3S=file:PATH (a binary, or a directory with k3s and its companions), in rootfs/k3s.lock.
func (K3s) Pin() error {
	wd, _ := os.Getwd()
	pinned, err := ci.NewPlan(wd).PinK3s()
	for _, p := range pinned {
		fmt.Println("pinned", p)
	}
	return err
}

// Kernel holds the kernel targets besides the build itself.
type Kernel mg.Namespace

// Lock pins the kernel, kernel source and Pi firmware packages into kernel/kernel.lock.
func (Kernel) Lock(ctx context.Context) error {
	return buildAndExport(ctx, func(p *ci.Plan) (*ci.Step, error) { return p.KernelLock(), nil },
		map[string]string{"kernel.lock": "kernel/kernel.lock"})
}

// Build builds the kernel of $KERNEL (source, reduced, debian) into dist/kernel/ (Image, config, System.map).
func (Kernel) Build(ctx context.Context) error {
	return buildAndExport(ctx, (*ci.Plan).Kernel, map[string]string{
		"Image": "dist/kernel/Image", "config": "dist/kernel/config", "System.map": "dist/kernel/System.map"})
}

// Image builds the SD-card image for config/ (or $CONFIG_DIR) into dist/, with .zst, manifest, SBOM and sha256sums.
func Image(ctx context.Context) error {
	p, r, done, err := pipeline(ctx)
	if err != nil {
		return err
	}
	defer done()
	if p.KernelFlavour == ci.KernelSource {
		r.Log.Warn("KERNEL=source: the full kernel is built from source, hours on 2 cores the first time (then cached); KERNEL=debian uses Debian's prebuilt kernel")
	}
	return ci.BuildImage(ctx, p, r, configDir(), "dist", os.Stdout)
}

// Inspect prints the partition table, boot files, node configs and versions of an image.
func Inspect(image string) error {
	info, err := diskimage.Inspect(image)
	if err != nil {
		return err
	}
	info.Render(os.Stdout)
	return nil
}

// Flash writes IMAGE (.img or .img.zst) to the card DEVICE with progress, refusing mounted or system disks, and verifies it.
func Flash(image, device string) error {
	return flash.Write(image, device, flash.Host, os.Stderr)
}

// Bench times a cold and a cached root filesystem build and a config-only image rebuild into dist/bench.json.
func Bench(ctx context.Context) error {
	p, r, done, err := pipeline(ctx)
	if err != nil {
		return err
	}
	defer done()
	pinned, err := engine.Host(r.Project, r.Cache, r.Log)
	if err != nil {
		return err
	}
	newRunner := func(cache string) *ci.Runner {
		h := host.New(cache, r.Log)
		h.Pins = pinned.Pins
		return &ci.Runner{Engine: h, Cache: cache, Project: r.Project, Log: r.Log}
	}
	rs, err := ci.Bench(ctx, p, newRunner, r.Cache, configDir(), os.Stdout)
	if err != nil {
		return err
	}
	return ci.WriteBench("dist/bench.json", rs)
}

// Toolchains holds the toolchain targets.
type Toolchains mg.Namespace

// Lock records the exact package set of every toolchain not yet in ci/toolchains.lock (new or changed ones), from fresh host tools roots; delete the file first to take what the mirror has now for all.
func (Toolchains) Lock(ctx context.Context) error {
	log := ci.NewLogger(mg.Verbose())
	old, err := ci.ReadToolchainLock(ci.ToolchainLockFile)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "k3os-toolchains-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	h := host.New(tmp, log) // fresh roots, no pins: what the mirror has now
	lock := ci.ToolchainLock{}
	for _, t := range ci.Toolchains {
		if pins, ok := old[t.Key()]; ok {
			lock[t.Key()] = pins
			continue
		}
		root, err := h.ToolsRoot(ctx, t, os.Stderr)
		if err != nil {
			return err
		}
		if err := lock.AddRoot(t, root); err != nil {
			return err
		}
		log.WithField("toolchain", t.Key()).Info("locked")
	}
	return lock.Write(ci.ToolchainLockFile)
}
