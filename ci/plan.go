package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/kconfig"
)

// nowStamp changes every run, for steps that must never be cached (the
// lock asks the mirror what is current).
func nowStamp() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// Toolchains the steps run in. Each is a Debian root, cached by its
// definition; changing one rebuilds only the steps that use it.
var (
	// GoToolchain builds the project's Go programs (Debian's Go 1.26).
	GoToolchain = Toolchain{
		Suites:   []string{"trixie", "trixie-backports"},
		Arch:     "amd64",
		Packages: []string{"golang-1.26-go", "ca-certificates"},
	}
)

const goPath = "/usr/lib/go-1.26/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Plan is the pipeline for one build: which steps, with which options.
type Plan struct {
	// Version of the image and of the agent.
	Version string
	// K3S is the k3s option: "" (the locked release), file:PATH or none.
	K3S string
	// KernelFlavour is the KERNEL option.
	KernelFlavour string

	project string
	steps   map[string]*Step
}

// WithKernel returns a copy of the plan that builds another kernel flavour.
func (p *Plan) WithKernel(flavour string) *Plan {
	return &Plan{Version: p.Version, K3S: p.K3S, KernelFlavour: flavour, project: p.project}
}

// once returns the plan's single instance of a step, so that every step
// depending on it shares it.
func (p *Plan) once(name string, def func() *Step) *Step {
	if p.steps == nil {
		p.steps = map[string]*Step{}
	}
	if s, ok := p.steps[name]; ok {
		return s
	}
	s := def()
	p.steps[name] = s
	return s
}

// NewPlan reads the build options (VERSION file, overridden by $VERSION).
func NewPlan(project string) *Plan {
	v := os.Getenv("VERSION")
	if v == "" {
		b, _ := os.ReadFile(project + "/VERSION")
		v = strings.TrimSpace(string(b))
	}
	if v == "" {
		v = "dev"
	}
	kernel := os.Getenv("KERNEL")
	if kernel == "" {
		kernel = KernelSource
	}
	return &Plan{Version: v, K3S: os.Getenv("K3S"), KernelFlavour: kernel, project: project}
}

// deviceSources are the parts of the source tree the on-device agent is
// built from; the module download and the build see only these.
var deviceSources = []string{"go.mod", "go.sum", "cmd", "agent", "nodeconfig"}

// GoModules fetches the Go modules the device programs need, verified
// against go.sum, so that the build steps run without network.
func (p *Plan) GoModules() *Step {
	env := map[string]string{"PATH": goPath, "GOMODCACHE": OutDir + "/mod", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", "GOCACHE": WorkDir + "/gocache"}
	for _, k := range []string{"GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOSUMDB"} {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	return p.once("gomod", func() *Step {
		return &Step{
			Name:      "gomod",
			Toolchain: GoToolchain,
			Inputs:    []Input{{Name: "src", Path: ".", Include: deviceSources}},
			Env:       env,
			Commands: [][]string{{"sh", "-euc", `cd /in/src
mkdir -p /out/mod
GOOS=linux GOARCH=arm64 go list -deps ./cmd/k3os-agent >/dev/null
# The cache's download/ holds zips and locks the build does not need.
chmod -R u+w /out/mod && find /out/mod -name '*.lock' -delete`}},
			Outputs: []string{"mod"},
			Network: true,
		}
	})
}

// Agent builds the on-device agent: a static arm64 binary.
func (p *Plan) Agent() *Step {
	return p.once("agent", func() *Step {
		return &Step{
			Name:      "agent",
			Toolchain: GoToolchain,
			Inputs: []Input{
				{Name: "src", Path: ".", Include: deviceSources},
				{Name: "mod", Step: p.GoModules()},
			},
			Env: map[string]string{
				"PATH": goPath, "GOMODCACHE": InDir + "/mod/mod", "GOPROXY": "off", "GOFLAGS": "-mod=readonly",
				"GOTOOLCHAIN": "local", "GOCACHE": CacheDir + "/go-build", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64",
			},
			Commands: [][]string{{"sh", "-euc", `cd /in/src
go build -trimpath -buildvcs=false -ldflags="-s -w -buildid= -X main.version=` + p.Version + `" -o /out/k3os-agent ./cmd/k3os-agent`}},
			Caches:  []string{"go-build"},
			Outputs: []string{"k3os-agent"},
		}
	})
}

// RootfsToolchain builds the Debian root: mmdebstrap, qemu-user for the
// arm64 maintainer scripts, and squashfs-tools.
var RootfsToolchain = Toolchain{
	Suites: []string{"trixie", "trixie-updates"},
	Arch:   "amd64",
	Packages: []string{"mmdebstrap", "arch-test", "uidmap", "mount", "qemu-user", "qemu-user-binfmt",
		"apt-utils", "ca-certificates", "openssl", "squashfs-tools", "zstd"},
}

// RootfsLock resolves rootfs/packages.list against the mirror into a lock
// of exact versions and checksums (go tool mage rootfs:lock).
func (p *Plan) RootfsLock() *Step {
	return p.once("rootfs-lock", func() *Step {
		return &Step{
			Name:      "rootfs-lock",
			Toolchain: RootfsToolchain,
			Inputs: []Input{
				{Name: "rootfs", Path: "rootfs", Include: []string{"build.sh", "packages.list"}},
				{Name: "scripts", Path: "ci/scripts"},
			},
			Env:      map[string]string{"MIRROR": DebianMirror(), "K3OS_LOCK_TIME": nowStamp()},
			Commands: [][]string{{"sh", "/in/rootfs/build.sh", "lock"}},
			Outputs:  []string{"packages.lock"},
			Network:  true,
		}
	})
}

// RootfsBase installs exactly the locked Debian packages into a root
// directory: the expensive part, cached by the lock.
func (p *Plan) RootfsBase() (*Step, error) {
	debs, err := ReadDebLock(p.project + "/rootfs/packages.lock")
	if err != nil {
		return nil, err
	}
	return p.once("rootfs-base", func() *Step {
		return &Step{
			Name:      "rootfs-base",
			Toolchain: RootfsToolchain,
			Inputs: []Input{
				{Name: "rootfs", Path: "rootfs", Include: []string{"build.sh", "packages.list", "packages.lock"}},
				{Name: "debs", Downloads: debDownloads(debs, DebianMirror())},
			},
			Commands:   [][]string{{"sh", "/in/rootfs/build.sh", "base"}},
			Outputs:    []string{"root.tar", "packages.tsv"},
			Privileged: true,
		}
	}), nil
}

// ImageToolchain assembles the boot files and the SD-card image.
var ImageToolchain = Toolchain{
	Suites: []string{"trixie", "trixie-updates"},
	Arch:   "amd64",
	Packages: []string{"dosfstools", "mtools", "e2fsprogs", "fdisk", "squashfs-tools", "kmod", "cpio",
		"zstd", "xz-utils", "device-tree-compiler"},
}

// KernelLock pins the Debian packages of the kernel and the boot firmware
// (go tool mage kernel:lock): the prebuilt kernel, the kernel source and
// the Raspberry Pi firmware.
func (p *Plan) KernelLock() *Step {
	return p.once("kernel-lock", func() *Step {
		return &Step{
			Name:      "kernel-lock",
			Toolchain: ImageToolchain,
			Inputs:    []Input{{Name: "scripts", Path: "ci/scripts"}},
			Env: map[string]string{"MIRROR": DebianMirror(), "K3OS_LOCK_TIME": nowStamp(),
				"ARCH": "arm64", "SUITES": "trixie trixie-updates", "COMPONENTS": "main non-free-firmware"},
			Commands: [][]string{{"sh", "-euc", `sh /in/scripts/deblock.sh --only 'linux-image-[0-9].*|raspi-firmware|linux-source-6\.12|linux-config-6\.12' \
	linux-image-arm64 raspi-firmware linux-source-6.12 linux-config-6.12 > /out/kernel.lock`}},
			Outputs: []string{"kernel.lock"},
			Network: true,
		}
	})
}

// K3sNone is the K3S value for images without k3s.
const K3sNone = "none"

// Rootfs is the image's root: the base root plus the agent, overlay/ and
// k3s, packed read-only. Changing the agent or overlay/ redoes only this.
func (p *Plan) Rootfs() (*Step, error) {
	base, err := p.RootfsBase()
	if err != nil {
		return nil, err
	}
	k3s, desc, err := p.k3sInput()
	if err != nil {
		return nil, err
	}
	return p.once("rootfs", func() *Step {
		inputs := []Input{
			{Name: "rootfs", Path: "rootfs", Include: []string{"layer.sh"}},
			{Name: "base", Step: base},
			{Name: "agent", Step: p.Agent()},
			{Name: "overlay", Path: "overlay"},
		}
		if k3s != nil {
			inputs = append(inputs, *k3s)
		}
		return &Step{
			Name:      "rootfs",
			Toolchain: RootfsToolchain,
			Inputs:    inputs,
			Env:       map[string]string{"VERSION": p.Version, "K3S_DESC": desc},
			Commands:  [][]string{{"sh", "/in/rootfs/layer.sh"}},
			Outputs:   []string{"rootfs.squashfs", "k3os-release"},
		}
	}), nil
}

// lockedDebs returns the named packages of a lock as pinned downloads.
func (p *Plan) lockedDebs(lock string, names ...string) ([]Download, error) {
	debs, err := ReadDebLock(filepath.Join(p.project, lock))
	if err != nil {
		return nil, err
	}
	var out []LockedDeb
	for _, d := range debs {
		for _, n := range names {
			if matched, _ := filepath.Match(n, d.Package); matched {
				out = append(out, d)
			}
		}
	}
	if len(out) != len(names) {
		return nil, fmt.Errorf("%s: want packages %v, found %d of them (go tool mage kernel:lock)", lock, names, len(out))
	}
	return debDownloads(out, DebianMirror()), nil
}

// Kernel flavours (KERNEL=...).
const (
	KernelSource  = "source"  // linux-source with Debian's config and our fragments (hours on 2 cores)
	KernelReduced = "reduced" // linux-source, allnoconfig and our fragments: boots QEMU virt (CI)
	KernelDebian  = "debian"  // Debian's prebuilt linux-image-arm64 (fast iteration)
)

// KernelToolchain cross-builds the kernel.
var KernelToolchain = Toolchain{
	Suites: []string{"trixie", "trixie-updates"},
	Arch:   "amd64",
	Packages: []string{"gcc", "libc6-dev", "gcc-aarch64-linux-gnu", "make", "bc", "bison", "flex", "libssl-dev", "libelf-dev", "perl",
		"cpio", "kmod", "xz-utils", "zstd", "ccache",
		"python3"}, // python3: generated headers of some drivers (drm/msm) in the full config
}

// kernelFragments are the config fragments of a source flavour, in merge order.
var kernelFragments = map[string][]string{
	KernelSource:  {"rpi4.config", "k3s.config", "qemu-virt.config", "nodebug.config"},
	KernelReduced: {"reduced.config", "k3s.config", "qemu-virt.config"},
}

// KernelConfig merges a source flavour's .config; the Go check of every
// fragment's options runs on it before the long build starts.
func (p *Plan) KernelConfig(flavour string) (*Step, error) {
	names := []string{"linux-source-6.12"}
	if flavour == KernelSource {
		names = append(names, "linux-config-6.12")
	}
	src, err := p.lockedDebs("kernel/kernel.lock", names...)
	if err != nil {
		return nil, err
	}
	var frags []string
	for _, f := range kernelFragments[flavour] {
		frags = append(frags, filepath.Join(p.project, "kernel", "config", f))
	}
	return p.once("kernel-config-"+flavour, func() *Step {
		return &Step{
			Name:      "kernel-config-" + flavour,
			Toolchain: KernelToolchain,
			Inputs: []Input{
				{Name: "kernel", Path: "kernel", Include: []string{"build.sh", "config"}},
				{Name: "source", Downloads: src},
			},
			Commands: [][]string{{"sh", "/in/kernel/build.sh", "config", flavour}},
			Outputs:  []string{"config", "flavour"},
			Check: func(out string) error {
				problems, err := kconfig.CheckFiles(filepath.Join(out, "config"), frags...)
				if err != nil {
					return err
				}
				var errs []error
				for _, pr := range problems {
					errs = append(errs, pr)
				}
				return errors.Join(errs...)
			},
		}
	}), nil
}

// Kernel returns the kernel step of the plan's flavour.
func (p *Plan) Kernel() (*Step, error) {
	image, err := p.lockedDebs("kernel/kernel.lock", "linux-image-[0-9]*")
	if err != nil {
		return nil, err
	}
	switch f := p.KernelFlavour; f {
	case KernelDebian:
		return p.once("kernel-debian", func() *Step {
			return &Step{
				Name:      "kernel-debian",
				Toolchain: ImageToolchain,
				Inputs: []Input{
					{Name: "kernel", Path: "kernel", Include: []string{"build.sh"}},
					{Name: "debs", Downloads: image},
				},
				Commands: [][]string{{"sh", "/in/kernel/build.sh", "debian"}},
				Outputs:  kernelOutputs,
			}
		}), nil
	case KernelSource, KernelReduced:
		cfg, err := p.KernelConfig(f)
		if err != nil {
			return nil, err
		}
		src, err := p.lockedDebs("kernel/kernel.lock", "linux-source-6.12")
		if err != nil {
			return nil, err
		}
		return p.once("kernel-"+f, func() *Step {
			return &Step{
				Name:      "kernel-" + f,
				Toolchain: KernelToolchain,
				Inputs: []Input{
					{Name: "kernel", Path: "kernel", Include: []string{"build.sh"}},
					{Name: "config", Step: cfg},
					{Name: "source", Downloads: src},
					{Name: "debs", Downloads: image}, // the Pi device trees, for flavours that build none
				},
				Commands: [][]string{{"sh", "/in/kernel/build.sh", "build"}},
				Caches:   []string{"ccache"},
				Outputs:  kernelOutputs,
			}
		}), nil
	}
	return nil, fmt.Errorf("KERNEL=%s: use %s, %s or %s", p.KernelFlavour, KernelSource, KernelReduced, KernelDebian)
}

var kernelOutputs = []string{"Image", "config", "System.map", "kernel.release", "flavour", "dtbs", "modroot"}

// Boot makes the boot partition (firmware, kernel, initramfs with the
// agent, config.txt, cmdline.txt) and the kernel modules' squashfs.
func (p *Plan) Boot() (*Step, error) {
	kernel, err := p.Kernel()
	if err != nil {
		return nil, err
	}
	fw, err := p.lockedDebs("kernel/kernel.lock", "raspi-firmware")
	if err != nil {
		return nil, err
	}
	return p.once("boot", func() *Step {
		return &Step{
			Name:      "boot",
			Toolchain: ImageToolchain,
			Inputs: []Input{
				{Name: "scripts", Path: "ci/scripts", Include: []string{"image.sh"}},
				{Name: "kernel", Step: kernel},
				{Name: "agent", Step: p.Agent()},
				{Name: "firmware", Downloads: fw},
			},
			Commands:   [][]string{{"sh", "/in/scripts/image.sh", "boot"}},
			Outputs:    []string{"boot.vfat", "modules.squashfs", "boot"},
			Privileged: true, // mknod /dev/console in the initramfs
		}
	}), nil
}

// ImageName is the SD-card image's file name.
func (p *Plan) ImageName() string { return "k3os-rpi4-arm64-" + p.Version + ".img" }

// Image assembles the SD-card image from the boot partition, the root and
// the cluster's resolved node configs (configDir). A config-only change
// redoes only this step.
func (p *Plan) Image(configDir string) (*Step, error) {
	boot, err := p.Boot()
	if err != nil {
		return nil, err
	}
	rootfs, err := p.Rootfs()
	if err != nil {
		return nil, err
	}
	return p.once("image", func() *Step {
		return &Step{
			Name:      "image",
			Toolchain: ImageToolchain,
			Inputs: []Input{
				{Name: "scripts", Path: "ci/scripts", Include: []string{"image.sh"}},
				{Name: "boot", Step: boot},
				{Name: "rootfs", Step: rootfs},
				{Name: "config", Path: configDir},
			},
			Env:      map[string]string{"VERSION": p.Version, "IMAGE": p.ImageName()},
			Commands: [][]string{{"sh", "/in/scripts/image.sh", "disk"}},
			Outputs:  []string{p.ImageName()},
		}
	}), nil
}

// VMToolchain runs the boot test's virtual machines (trixie's QEMU has the
// raspi4b machine; bookworm's has not).
var VMToolchain = Toolchain{
	Suites:   []string{"trixie", "trixie-updates"},
	Arch:     "amd64",
	Packages: []string{"qemu-system-arm", "qemu-utils", "device-tree-compiler"},
}

// PostgresToolchain runs the PostgreSQL server of the boot test's
// external-datastore case.
var PostgresToolchain = Toolchain{
	Suites:   []string{"trixie", "trixie-updates"},
	Arch:     "amd64",
	Packages: []string{"postgresql"},
}
