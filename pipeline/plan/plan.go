// Package plan is the pipeline's step graph: which steps build the image,
// in which toolchains, from which pinned inputs (the package, kernel and
// k3s locks). New reads every lock once and builds the whole graph up
// front; nothing here runs a step.
package plan

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// Options are what a plan is made for.
type Options struct {
	// Project is the source tree (relative input paths start there).
	Project string
	// Version of the image and of the agent.
	Version string
	// Flavour is the kernel flavour (settings.KernelFull, ...).
	Flavour string
	// K3s is the k3s input: settings.K3sRelease, settings.K3sNone or file:PATH.
	K3s string
	// K3sImages are the images for k3s: settings.K3sRelease (the
	// release's airgap images), settings.K3sNone or file:PATH.
	K3sImages string
	// Mirror is the Debian mirror of the pinned packages.
	Mirror string
	// GoEnv are the Go module settings for the module download.
	GoEnv map[string]string
	// KernelLocalVersion, when set, is appended to the kernel's release
	// (the upgrade test's second version has a kernel of its own).
	KernelLocalVersion string
}

// Plan is the step graph of one build.
type Plan struct {
	Options
	GoModules, Agent   *step.Step
	RootfsBase, Rootfs *step.Step
	KernelConfig       *step.Step // nil for flavours built by no one (debian)
	Kernel, Boot       *step.Step
	// Images stages the images the version carries for k3s (nil: none).
	Images *step.Step
	// K3sDesc says which k3s the root carries ("none", "release v...", ...).
	K3sDesc string
	// K3sVersion is that k3s's version; "" when there is none or it is
	// not known.
	K3sVersion string
}

// New reads the locks and builds the step graph for o.
func New(o Options) (*Plan, error) {
	p := &Plan{Options: o}
	debs, err := ReadDebLock(p.file(PackagesLockFile))
	if err != nil {
		return nil, err
	}
	kernelLock, err := ReadDebLock(p.file(KernelLockFile))
	if err != nil {
		return nil, err
	}
	k3s, lock, err := p.k3sInput()
	if err != nil {
		return nil, err
	}
	if p.Images, err = p.k3sImages(lock); err != nil {
		return nil, err
	}
	p.GoModules = p.goModules()
	p.Agent = p.agent()
	p.RootfsBase = p.rootfsBase(debs)
	p.Rootfs = p.rootfs(k3s)
	if err := p.kernel(kernelLock); err != nil {
		return nil, err
	}
	fw, err := p.lockedDebs(kernelLock, "raspi-firmware")
	if err != nil {
		return nil, err
	}
	p.Boot = p.boot(fw)
	return p, nil
}

func (p *Plan) file(rel string) string { return filepath.Join(p.Project, rel) }

// nowStamp changes every run, for steps that must never be cached (the
// locks ask the mirror what is current).
func nowStamp() string { return time.Now().UTC().Format(time.RFC3339Nano) }

const goPath = "/usr/lib/go-1.26/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// deviceSources are the parts of the source tree the on-device agent is
// built from; the module download and the build see only these.
var deviceSources = []string{"go.mod", "go.sum", "cmd", "agent", "nodeconfig", "layout", "bundle"}

// goModules fetches the Go modules the device programs need, verified
// against go.sum, so that the build steps run without network.
func (p *Plan) goModules() *step.Step {
	env := map[string]string{"PATH": goPath, "GOMODCACHE": step.OutDir + "/mod", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", "GOCACHE": step.WorkDir + "/gocache"}
	maps.Copy(env, p.GoEnv)
	return &step.Step{
		Name:      "gomod",
		Toolchain: GoToolchain,
		Inputs:    []step.Input{{Name: "src", Path: ".", Include: deviceSources}},
		Env:       env,
		Commands: [][]string{{"sh", "-euc", `cd /in/src
mkdir -p /out/mod
GOOS=linux GOARCH=arm64 go list -deps ./cmd/k3os-agent >/dev/null
# The cache's download/ holds zips and locks the build does not need.
chmod -R u+w /out/mod && find /out/mod -name '*.lock' -delete`}},
		Outputs: []string{"mod"},
		Network: true,
	}
}

// agent builds the on-device agent: a static arm64 binary.
func (p *Plan) agent() *step.Step {
	return &step.Step{
		Name:      "agent",
		Toolchain: GoToolchain,
		Inputs: []step.Input{
			{Name: "src", Path: ".", Include: deviceSources},
			{Name: "mod", Step: p.GoModules},
		},
		Env: map[string]string{
			"PATH": goPath, "GOMODCACHE": step.InDir + "/mod/mod", "GOPROXY": "off", "GOFLAGS": "-mod=readonly",
			"GOTOOLCHAIN": "local", "GOCACHE": step.CacheDir + "/go-build", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64",
			"VERSION": p.Version,
		},
		Commands: [][]string{{"sh", "-euc", `cd /in/src
go build -trimpath -buildvcs=false -ldflags="-s -w -buildid= -X main.version=$VERSION" -o /out/k3os-agent ./cmd/k3os-agent`}},
		Caches:  []string{"go-build"},
		Outputs: []string{"k3os-agent"},
	}
}

// RootfsLock resolves rootfs/packages.list against the mirror into a lock
// of exact versions and checksums (go tool mage rootfs:lock). It needs no
// lock to exist, so it is made apart from the plan.
func RootfsLock(o Options) *step.Step {
	return &step.Step{
		Name:      "rootfs-lock",
		Toolchain: RootfsToolchain,
		Inputs: []step.Input{
			{Name: "rootfs", Path: "rootfs", Include: []string{"build.sh", "packages.list"}},
			{Name: "scripts", Path: "pipeline/scripts"},
		},
		Env:      map[string]string{"MIRROR": o.Mirror, "K3OS_LOCK_TIME": nowStamp()},
		Commands: [][]string{{"sh", "/in/rootfs/build.sh", "lock"}},
		Outputs:  []string{"packages.lock"},
		Network:  true,
	}
}

// rootfsBase installs exactly the locked Debian packages into a root
// directory: the expensive part, cached by the lock.
func (p *Plan) rootfsBase(debs []LockedDeb) *step.Step {
	return &step.Step{
		Name:      "rootfs-base",
		Toolchain: RootfsToolchain,
		Inputs: []step.Input{
			{Name: "rootfs", Path: "rootfs", Include: []string{"build.sh", "packages.list", "packages.lock"}},
			{Name: "debs", Downloads: debDownloads(debs, p.Mirror)},
		},
		Commands:   [][]string{{"sh", "/in/rootfs/build.sh", "base"}},
		Outputs:    []string{"root.tar", "packages.tsv"},
		Privileged: true,
	}
}

// rootfs is the image's root: the base root plus the agent, overlay/ and
// k3s, packed read-only. Changing the agent or overlay/ redoes only this.
func (p *Plan) rootfs(k3s *step.Input) *step.Step {
	inputs := []step.Input{
		{Name: "rootfs", Path: "rootfs", Include: []string{"layer.sh"}},
		{Name: "base", Step: p.RootfsBase},
		{Name: "agent", Step: p.Agent},
		{Name: "overlay", Path: "overlay"},
	}
	if k3s != nil {
		inputs = append(inputs, *k3s)
	}
	return &step.Step{
		Name:      "rootfs",
		Toolchain: RootfsToolchain,
		Inputs:    inputs,
		Env:       map[string]string{"VERSION": p.Version, "K3S_DESC": p.K3sDesc},
		Commands:  [][]string{{"sh", "/in/rootfs/layer.sh"}},
		Outputs:   []string{"rootfs.squashfs", "k3os-release"},
	}
}

// boot makes a boot slot of the version (firmware, kernel, initramfs with
// the agent, config.txt, a cmdline.txt naming the version) and the kernel
// modules' squashfs.
func (p *Plan) boot(firmware []step.Download) *step.Step {
	env := layout.Env()
	env["VERSION"] = p.Version
	return &step.Step{
		Name:      "boot-" + p.Flavour,
		Toolchain: ImageToolchain,
		Inputs: []step.Input{
			{Name: "scripts", Path: "pipeline/scripts", Include: []string{"image.sh"}},
			{Name: "kernel", Step: p.Kernel},
			{Name: "agent", Step: p.Agent},
			{Name: "firmware", Downloads: firmware},
		},
		Env:        env,
		Commands:   [][]string{{"sh", "/in/scripts/image.sh", "boot"}},
		Outputs:    []string{"boot.vfat", "modules.squashfs", "boot"},
		Privileged: true, // mknod /dev/console in the initramfs
	}
}

// ImageName is the SD-card image's file name.
func (p *Plan) ImageName() string { return "k3os-rpi4-arm64-" + p.Version + ".img" }

// Image assembles the SD-card image from the boot slot, the root, the
// version's images for k3s, a directory of resolved node configs, one of
// the public keys (*.pub) upgrades must be signed with and, unless "", one
// of the cluster's own image tarballs. A config-only change redoes only
// this step.
func (p *Plan) Image(configDir, trustDir, clusterImages string) *step.Step {
	env := layout.Env()
	env["VERSION"] = p.Version
	env["IMAGE"] = p.ImageName()
	inputs := []step.Input{
		{Name: "scripts", Path: "pipeline/scripts", Include: []string{"image.sh"}},
		{Name: "boot", Step: p.Boot},
		{Name: "rootfs", Step: p.Rootfs},
		{Name: "config", Path: configDir},
		{Name: "trust", Path: trustDir},
	}
	if p.Images != nil {
		inputs = append(inputs, step.Input{Name: "images", Step: p.Images})
	}
	if clusterImages != "" {
		inputs = append(inputs, step.Input{Name: "cluster-images", Path: clusterImages})
	}
	return &step.Step{
		Name:      "image-" + p.Flavour,
		Toolchain: ImageToolchain,
		Inputs:    inputs,
		Env:       env,
		Commands:  [][]string{{"sh", "/in/scripts/image.sh", "disk"}},
		Outputs:   []string{p.ImageName()},
	}
}

// Steps are every step of the graph with the image of configDir and
// trustDir, each once, dependencies first.
func (p *Plan) Steps(configDir, trustDir string) []*step.Step {
	return p.Image(configDir, trustDir, "").Graph()
}

// lockedDebs returns the named packages (patterns) of a lock as pinned
// downloads; each pattern must match.
func (p *Plan) lockedDebs(lock []LockedDeb, names ...string) ([]step.Download, error) {
	var out []LockedDeb
	for _, n := range names {
		i := slices.IndexFunc(lock, func(d LockedDeb) bool {
			ok, _ := filepath.Match(n, d.Package)
			return ok
		})
		if i < 0 {
			return nil, fmt.Errorf("%s: no package %s (go tool mage kernel:lock)", KernelLockFile, n)
		}
		out = append(out, lock[i])
	}
	return debDownloads(out, p.Mirror), nil
}

// KernelFlavours are the valid KERNEL values.
var KernelFlavours = []string{settings.KernelPi, settings.KernelFull, settings.KernelDebian, settings.KernelReduced}
