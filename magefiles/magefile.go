//go:build mage

// Targets of the k3OS Raspberry Pi 4 image build. Each is a few lines over
// the pipeline and nodeconfig packages; run `go tool mage -l` to list them
// and `go tool mage settings` for the options they read.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/flash"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig/schema"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/bench"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/boottest"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/dagger"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/engine/host"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/rollout"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/try"
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
	return plan.Options{Project: s.Project, Version: s.Version, Flavour: s.Kernel, K3s: s.K3s, K3sImages: s.K3sImages, Mirror: s.Mirror, GoEnv: s.GoEnv}
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

// runnerWithHost is runner plus the host engine, which runs the boot
// tests' own tools whichever engine builds.
func runnerWithHost(ctx context.Context, s *settings.Settings) (*run.Runner, *host.Engine, func() error, error) {
	cfg, err := engineConfig(s)
	if err != nil {
		return nil, nil, nil, err
	}
	r, done, err := runner(ctx, s)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, engine.Host(cfg, r.Log), done, nil
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
	return atomicfile.WriteFile(filepath.Join("dist", "k3os-config.schema.json"), schema.JSON(), 0o644)
}

// Generate rewrites what is generated from the code: the JSON Schema and the key reference of docs/config.md from the config types, and the README's settings table.
func Generate() error {
	b, err := schema.Generate("nodeconfig")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join("nodeconfig", "schema", "k3os-config.schema.json"), b, 0o644); err != nil {
		return err
	}
	keys, err := schema.Reference("nodeconfig")
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

// Test is the whole proof CI runs: vet, unit tests (the example config's own among them), a bounded fuzz run, then the boot test (see boottest).
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
	return Boottest(ctx)
}

// Boottest builds an image for a test cluster (K3S=none unless set) and boots it in QEMU: virt by MAC, a second boot, default.yaml, a USB disk, raspi4b; with k3s, Ready on one node, two nodes and a PostgreSQL datastore.
func Boottest(ctx context.Context) error {
	s, err := load(true)
	if err != nil {
		return err
	}
	r, hostEngine, done, err := runnerWithHost(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	return boottest.Run(ctx, boottest.Config{Plan: planOptions(s), Runner: r, Host: hostEngine, Dist: "dist",
		Cases: s.VMTestCases, Keep: s.VMTestKeep, RequireK3s: s.RequireK3sReady, AllPowerCuts: s.AllPowerCuts, Out: os.Stdout})
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

// Pin pins the files of a local k3s, K3S=file:PATH (a binary, or a directory with k3s and its companions), and local images, K3S_IMAGES=file:PATH, in rootfs/k3s.lock.
func (K3s) Pin() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	var pinned []string
	if strings.HasPrefix(s.K3s, "file:") {
		if pinned, err = plan.PinK3s(planOptions(s)); err != nil {
			return err
		}
	}
	if strings.HasPrefix(s.K3sImages, "file:") {
		more, err := plan.PinImages(planOptions(s))
		if err != nil {
			return err
		}
		pinned = append(pinned, more...)
	}
	if len(pinned) == 0 {
		return fmt.Errorf("nothing to pin: k3s:pin pins K3S=file:PATH and K3S_IMAGES=file:PATH")
	}
	for _, p := range pinned {
		fmt.Println("pinned", p)
	}
	return nil
}

// Kernel holds the kernel targets besides the build itself.
type Kernel mg.Namespace

// Lock pins the kernel, kernel source and Pi firmware packages into kernel/kernel.lock.
func (Kernel) Lock(ctx context.Context) error {
	return buildAndExport(ctx, func(s *settings.Settings) (*step.Step, error) { return plan.KernelLock(planOptions(s)), nil },
		map[string]string{"kernel.lock": plan.KernelLockFile})
}

// Config merges and checks the .config of $KERNEL into dist/kernel/config, in seconds, without building the kernel.
func (Kernel) Config(ctx context.Context) error {
	return buildAndExport(ctx, func(s *settings.Settings) (*step.Step, error) {
		p, err := plan.New(planOptions(s))
		if err != nil {
			return nil, err
		}
		if p.KernelConfig == nil {
			return nil, fmt.Errorf("KERNEL=%s is a prebuilt kernel: it has no config step", s.Kernel)
		}
		return p.KernelConfig, nil
	}, map[string]string{"config": "dist/kernel/config"})
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
	trust, err := release.TrustKeys(s.UpgradeKey, s.UpgradeTrust)
	if err != nil {
		return err
	}
	if len(trust) == 0 {
		r.Log.Warn("UPGRADE_KEY is unset: the image trusts no upgrade key, so its nodes change only by reflashing (docs/upgrades.md)")
	}
	return release.Image{Plan: p, Runner: r, ConfigDir: s.ConfigDir, Env: os.LookupEnv, PerNode: s.PerNodeCards, Trust: trust, ReleaseURL: s.ReleaseURL, Out: os.Stdout}.Build(ctx, "dist")
}

// Upgrade builds the upgrade bundle of this version into dist/ (k3os-rpi4-arm64-<version>.upgrade, its .sha256 and the channel file), signed with $UPGRADE_KEY; UPGRADE_CONTENT=config|all makes one bundle per node of $CONFIG_DIR with its config.
func Upgrade(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	key, err := release.LoadKey(s.UpgradeKey, s.UpgradeKeyPassword)
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
	_, err = release.Upgrade{Plan: p, Runner: r, Content: s.UpgradeContent, ConfigDir: s.ConfigDir, Env: os.LookupEnv, Key: key, Out: os.Stdout}.Build(ctx, "dist")
	return err
}

// Rollout upgrades the nodes of $CONFIG_DIR one at a time over SSH (rancher@ their static address or hostname), servers first, with the bundles `upgrade` put in dist/; it waits for each to run the version committed and healthy, and stops at the first failure. ROLLOUT_DRAIN=1 cordons and drains each node first.
func Rollout(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	cluster, err := release.ValidateConfig(s.ConfigDir, io.Discard)
	if err != nil {
		return err
	}
	nodes, skipped := rollout.NodesOf(cluster, func(node string) string {
		if s.UpgradeContent == release.ContentSystem {
			node = ""
		}
		return filepath.Join("dist", release.BundleName(s.Version, node))
	})
	for _, n := range skipped {
		fmt.Println("rollout: skipping " + n)
	}
	for _, n := range nodes {
		if _, err := os.Stat(n.Bundle); err != nil {
			return fmt.Errorf("%s has no bundle (go tool mage upgrade with the same VERSION and UPGRADE_CONTENT): %w", n.Hostname, err)
		}
	}
	r := rollout.Rollout{Nodes: nodes, SSH: []string{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"}, User: "rancher",
		Version: s.Version, Drain: s.RolloutDrain, Out: os.Stdout}
	return r.Run(ctx)
}

// Try boots every node of $CONFIG_DIR in QEMU from the one image, each with its file's MAC, on one private link (static addresses as configured, DHCP for the rest), prints each node's progress and hands you SSH to each and a kubeconfig (dist/try/); Ctrl-C stops it. The example's placeholders are allowed: these cards are never flashed.
func Try(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	r, hostEngine, done, err := runnerWithHost(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	trust, err := release.TrustKeys(s.UpgradeKey, s.UpgradeTrust)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return try.Run(ctx, try.Config{Plan: planOptions(s), Runner: r, Host: hostEngine, ConfigDir: s.ConfigDir, Env: os.LookupEnv, Trust: trust, Dist: "dist", Out: os.Stdout})
}

// Keygen makes the upgrade signing key pair at $UPGRADE_KEY's PATH (secret, 0600; encrypted with $UPGRADE_KEY_PASSWORD if set) and PATH.pub; it never overwrites one.
func Keygen() error {
	s, err := load(false)
	if err != nil {
		return err
	}
	if s.UpgradeKey == "" {
		return fmt.Errorf("set UPGRADE_KEY=file:PATH, where the key pair goes (keep PATH secret, outside the repository)")
	}
	pub, err := release.Keygen(s.UpgradeKey, s.UpgradeKeyPassword)
	if err != nil {
		return err
	}
	fmt.Printf("upgrade key %016X: secret %s, public %s.pub\nbuild images with UPGRADE_KEY=file:%s so that their nodes accept bundles signed with it\n", pub.ID(), s.UpgradeKey, s.UpgradeKey, s.UpgradeKey)
	return nil
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

// Flash writes IMAGE (.img or .img.zst) to the card DEVICE with progress, refusing mounted, system and (unless FLASH_INTERNAL=1) non-removable disks, and verifies it past the page cache.
func Flash(image, device string) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	return flash.Write(image, device, flash.Host, s.FlashInternal, os.Stderr)
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

// BenchKernel times cold builds (empty ccache) of the reduced kernel, the yardstick, then of $KERNEL (default pi) in the same run, with the objects each compiles, into dist/bench-kernel.json.
func BenchKernel(ctx context.Context) error {
	s, err := load(false)
	if err != nil {
		return err
	}
	cfg, err := engineConfig(s)
	if err != nil {
		return err
	}
	var plans []*plan.Plan
	for _, f := range []string{settings.KernelReduced, s.Kernel} {
		o := planOptions(s)
		o.Flavour = f
		p, err := plan.New(o)
		if err != nil {
			return err
		}
		plans = append(plans, p)
	}
	log := run.NewLogger(mg.Verbose())
	newRunner := func(cache, volumes string) *run.Runner {
		h := engine.Host(cfg, log)
		h.Volumes = volumes
		// The pinned downloads are the same files: no need to fetch them again.
		if err := os.MkdirAll(cache, 0o700); err == nil {
			os.Symlink(filepath.Join(s.Cache, "downloads"), filepath.Join(cache, "downloads"))
		}
		return &run.Runner{Engine: h, Cache: cache, Project: s.Project, Log: log}
	}
	h := engine.Host(cfg, log)
	// The tools root is no part of a kernel's build time.
	if _, err := h.ToolsRoot(ctx, plan.KernelToolchain, io.Discard); err != nil {
		return err
	}
	keep := &run.Runner{Engine: h, Cache: s.Cache, Project: s.Project, Log: log}
	rs, err := bench.Kernels(ctx, plans, newRunner, keep, os.Stdout)
	if err != nil {
		return err
	}
	return bench.Write("dist/bench-kernel.json", rs)
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
