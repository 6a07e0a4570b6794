//go:build mage

// Targets of the k3OS Raspberry Pi 4 image build. Each is a few lines over
// the pipeline and nodeconfig packages; run `go tool mage -l` to list them
// and `go tool mage settings` for the options they read.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/flash"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/bench"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/boottest"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/dagger"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// load reads the settings, once, before any work: an invalid value stops
// the target here. test selects the test targets' defaults.
func load(test bool) (*settings.Settings, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return settings.Load(wd, os.LookupEnv, test)
}

func planOptions(s *settings.Settings) plan.Options {
	return plan.Options{Project: s.Project, Version: s.Version, Flavour: s.Kernel, K3s: s.K3s, Mirror: s.Mirror, GoEnv: s.GoEnv}
}

func engineConfig(s *settings.Settings) (engine.Config, error) {
	pins, err := plan.ReadToolchainLock(filepath.Join(s.Project, plan.ToolchainLockFile))
	return engine.Config{Choice: s.Engine, DaggerBase: dagger.Base(s.DaggerBase), Cache: s.Cache, Mirror: s.Mirror, Pins: pins,
		Dagger: dagger.Env{SessionPort: s.Dagger.SessionPort, RunnerHost: s.Dagger.RunnerHost, CLIBin: s.Dagger.CLIBin, CacheHome: s.Dagger.CacheHome}}, err
}

// runner returns a runner on the engine the settings select. Call the
// returned function when done.
func runner(ctx context.Context, s *settings.Settings) (*run.Runner, func() error, error) {
	log := run.NewLogger(mg.Verbose())
	cfg, err := engineConfig(s)
	if err != nil {
		return nil, nil, err
	}
	eng, closeEngine, err := engine.Select(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	r := &run.Runner{Engine: eng, Cache: s.Cache, Project: s.Project, Log: log}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && !s.Plain {
		r.Progress = os.Stderr
	}
	log.WithFields(logrus.Fields{"engine": eng.Name(), "cache": s.Cache}).Info("pipeline")
	return r, closeEngine, nil
}

// buildAndExport builds one step of the plan and copies some of its
// outputs (output name -> destination) into place.
func buildAndExport(ctx context.Context, pick func(*settings.Settings) (*step.Step, error), files map[string]string) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	st, err := pick(s)
	if err != nil {
		return err
	}
	r, done, err := runner(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	if err := r.Prefetch(ctx, st); err != nil {
		return err
	}
	out, err := r.Build(ctx, st)
	if err != nil {
		return err
	}
	return run.Export(out, files)
}

// fromPlan picks a step of the settings' plan.
func fromPlan(pick func(*plan.Plan) *step.Step) func(*settings.Settings) (*step.Step, error) {
	return func(s *settings.Settings) (*step.Step, error) {
		p, err := plan.New(planOptions(s))
		if err != nil {
			return nil, err
		}
		return pick(p), nil
	}
}

// Settings prints every option the targets read from the environment: name, default, what it does, which targets read it.
func Settings() {
	settings.Markdown(os.Stdout)
}

// Agent builds the on-device agent (static arm64) into dist/k3os-agent.
func Agent(ctx context.Context) error {
	return buildAndExport(ctx, fromPlan(func(p *plan.Plan) *step.Step { return p.Agent }),
		map[string]string{"k3os-agent": "dist/k3os-agent"})
}

// Clean removes dist/ and the build cache (steps, tools roots, downloads).
func Clean() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	for _, d := range []string{"dist", s.Cache} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// Cache holds the build cache's targets.
type Cache mg.Namespace

// Prune removes every cached step output but the most recently used of each step and engine (clean removes them all).
func (Cache) Prune() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	n, size, err := run.PruneSteps(s.Cache)
	fmt.Printf("removed %d step outputs, %d MiB\n", n, size>>20)
	return err
}

// Validate checks config/ (or $CONFIG_DIR) and prints each problem as file:line:col.
func Validate() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	_, err = release.ValidateConfig(s.ConfigDir, os.Stdout)
	return err
}

// Schema writes the node config JSON Schema to dist/k3os-config.schema.json, for editor completion.
func Schema() error {
	return atomicfile.WriteFile(filepath.Join("dist", "k3os-config.schema.json"), nodeconfig.JSONSchema(), 0o644)
}

// Generate rewrites what is generated from the code: the JSON Schema and the key reference of docs/config.md from the config types, and the README's settings table.
func Generate() error {
	schema, err := nodeconfig.GenerateSchema("nodeconfig")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join("nodeconfig", "k3os-config.schema.json"), schema, 0o644); err != nil {
		return err
	}
	keys, err := nodeconfig.Reference("nodeconfig")
	if err != nil {
		return err
	}
	if err := replaceSection("docs/config.md", "<!-- keys: go tool mage generate -->\n", "<!-- /keys -->", keys); err != nil {
		return err
	}
	var table strings.Builder
	settings.Markdown(&table)
	return replaceSection("README.md", "<!-- settings: go tool mage settings -->\n", "<!-- /settings -->", table.String())
}

// replaceSection replaces what stands between two markers of a file.
func replaceSection(file, start, end, content string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	before, rest, ok := strings.Cut(string(b), start)
	_, after, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		return fmt.Errorf("%s: no section between %q and %q", file, strings.TrimSpace(start), end)
	}
	return atomicfile.WriteFile(file, []byte(before+start+content+end+after), 0o644)
}

// Test is the whole proof CI runs: vet, unit tests, a bounded fuzz run, config validation, then the boot test (see boottest).
func Test(ctx context.Context) error {
	if _, err := load(true); err != nil {
		return err
	}
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

// Boottest builds an image for a test cluster (K3S=none unless set) and boots it in QEMU: virt by MAC, a second boot, default.yaml, raspi4b; with k3s, Ready on one node, two nodes and a PostgreSQL datastore.
func Boottest(ctx context.Context) error {
	s, err := load(true)
	if err != nil {
		return err
	}
	r, done, err := runner(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	cfg, err := engineConfig(s)
	if err != nil {
		return err
	}
	return boottest.Run(ctx, boottest.Config{Plan: planOptions(s), Runner: r, Host: engine.Host(cfg, r.Log), Dist: "dist",
		Cases: s.VMTestCases, Keep: s.VMTestKeep, RequireK3s: s.RequireK3sReady, Out: os.Stdout})
}

// Rootfs holds the root filesystem targets besides the build itself.
type Rootfs mg.Namespace

// Lock resolves rootfs/packages.list against the mirror into rootfs/packages.lock.
func (Rootfs) Lock(ctx context.Context) error {
	return buildAndExport(ctx, func(s *settings.Settings) (*step.Step, error) { return plan.RootfsLock(planOptions(s)), nil },
		map[string]string{"packages.lock": plan.PackagesLockFile})
}

// RootFS builds the root filesystem (dist/rootfs.squashfs) from rootfs/packages.lock, the agent, overlay/ and k3s ($K3S).
func RootFS(ctx context.Context) error {
	return buildAndExport(ctx, fromPlan(func(p *plan.Plan) *step.Step { return p.Rootfs }),
		map[string]string{"rootfs.squashfs": "dist/rootfs.squashfs"})
}

// K3s holds the k3s input targets.
type K3s mg.Namespace

// Pin pins the files of a local k3s, K3S=file:PATH (a binary, or a directory with k3s and its companions), in rootfs/k3s.lock.
func (K3s) Pin() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	pinned, err := plan.PinK3s(planOptions(s))
	for _, p := range pinned {
		fmt.Println("pinned", p)
	}
	return err
}

// Kernel holds the kernel targets besides the build itself.
type Kernel mg.Namespace

// Lock pins the kernel, kernel source and Pi firmware packages into kernel/kernel.lock.
func (Kernel) Lock(ctx context.Context) error {
	return buildAndExport(ctx, func(s *settings.Settings) (*step.Step, error) { return plan.KernelLock(planOptions(s)), nil },
		map[string]string{"kernel.lock": plan.KernelLockFile})
}

// Build builds the kernel of $KERNEL into dist/kernel/ (Image, config, System.map).
func (Kernel) Build(ctx context.Context) error {
	return buildAndExport(ctx, fromPlan(func(p *plan.Plan) *step.Step { return p.Kernel }), map[string]string{
		"Image": "dist/kernel/Image", "config": "dist/kernel/config", "System.map": "dist/kernel/System.map"})
}

// Image builds the SD-card image for config/ (or $CONFIG_DIR) into dist/, with .zst, manifest, SBOM and sha256sums.
func Image(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	p, err := plan.New(planOptions(s))
	if err != nil {
		return err
	}
	r, done, err := runner(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	if s.Kernel == settings.KernelFull {
		r.Log.Warn("KERNEL=full: Debian's whole config is built from source, hours on 2 cores the first time (then cached)")
	}
	return release.Image{Plan: p, Runner: r, ConfigDir: s.ConfigDir, Env: os.LookupEnv, Out: os.Stdout}.Build(ctx, "dist")
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
	s, err := load(true)
	if err != nil {
		return err
	}
	p, err := plan.New(planOptions(s))
	if err != nil {
		return err
	}
	cfg, err := engineConfig(s)
	if err != nil {
		return err
	}
	log := run.NewLogger(mg.Verbose())
	newRunner := func(cache string) *run.Runner {
		c := cfg
		c.Cache = cache
		return &run.Runner{Engine: engine.Host(c, log), Cache: cache, Project: s.Project, Log: log}
	}
	rs, err := bench.Bench(ctx, p, newRunner, s.Cache, s.ConfigDir, os.LookupEnv, os.Stdout)
	if err != nil {
		return err
	}
	return bench.Write("dist/bench.json", rs)
}

// Toolchains holds the toolchain targets.
type Toolchains mg.Namespace

// Lock records the exact package set of every toolchain not yet in pipeline/toolchains.lock (new or changed ones), from fresh host tools roots; delete the file first to take what the mirror has now for all.
func (Toolchains) Lock(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	log := run.NewLogger(mg.Verbose())
	file := filepath.Join(s.Project, plan.ToolchainLockFile)
	old, err := plan.ReadToolchainLock(file)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "k3os-toolchains-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	h := engine.Host(engine.Config{Cache: tmp, Mirror: s.Mirror}, log) // fresh roots, no pins: what the mirror has now
	lock := step.ToolchainLock{}
	for _, t := range plan.Toolchains {
		if pins, ok := old[t.Key()]; ok {
			lock[t.Key()] = pins
			continue
		}
		root, err := h.ToolsRoot(ctx, t, os.Stderr)
		if err != nil {
			return err
		}
		if err := plan.AddToolsRoot(lock, t, root); err != nil {
			return err
		}
		log.WithField("toolchain", t.Key()).Info("locked")
	}
	return plan.WriteToolchainLock(file, lock)
}
