package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/kconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// KernelLockFile pins the kernel, kernel source and Pi firmware packages.
const KernelLockFile = "kernel/kernel.lock"

// KernelFragments are the config fragments of each flavour built from
// source, in merge order (kernel/build.sh merges them; the config step's
// check holds the final .config to each).
var KernelFragments = map[string][]string{
	settings.KernelPi:      {"systemd.config", "modules.config", "k3s.config", "cluster.config", "rpi4.config", "qemu-virt.config"},
	settings.KernelFull:    {"rpi4.config", "k3s.config", "cluster.config", "qemu-virt.config", "nodebug.config"},
	settings.KernelReduced: {"systemd.config", "nomodules.config", "k3s.config", "qemu-virt.config"},
}

// kernelLists are the option lists the config step's check holds each
// flavour to besides its fragments: k3s's own check-config, and for the
// kernels that boot a Pi, the Pi 4 family's hardware.
var kernelLists = map[string][]kconfig.List{
	settings.KernelPi:      {kconfig.K3sCheckConfig, kconfig.K3sNetworkPlugins, kconfig.Pi4Hardware},
	settings.KernelFull:    {kconfig.K3sCheckConfig, kconfig.K3sNetworkPlugins, kconfig.Pi4Hardware},
	settings.KernelReduced: {kconfig.K3sCheckConfig},
}

// TrybootSymbol is the function of our tryboot patch
// (kernel/patches/0001-...): a kernel that boots a Pi must have it, or an
// upgrade cannot try a version once.
const TrybootSymbol = "rpi_firmware_tryboot_notify"

var kernelOutputs = []string{"Image", "config", "System.map", "kernel.release", "flavour", "dtbs", "modroot"}

// KernelLock pins the Debian packages of the kernel and the boot firmware
// (go tool mage kernel:lock): the prebuilt kernel, the kernel source and
// the Raspberry Pi firmware.
func KernelLock(o Options) *step.Step {
	return &step.Step{
		Name:      "kernel-lock",
		Toolchain: ImageToolchain,
		Inputs:    []step.Input{{Name: "scripts", Path: "pipeline/scripts"}},
		Env: map[string]string{"MIRROR": o.Mirror, "K3OS_LOCK_TIME": nowStamp(),
			"ARCH": "arm64", "SUITES": "trixie trixie-updates", "COMPONENTS": "main non-free-firmware"},
		Commands: [][]string{{"sh", "-euc", `sh /in/scripts/deblock.sh --only 'linux-image-[0-9].*|raspi-firmware|linux-source-6\.12|linux-config-6\.12' \
	linux-image-arm64 raspi-firmware linux-source-6.12 linux-config-6.12 > /out/kernel.lock`}},
		Outputs: []string{"kernel.lock"},
		Network: true,
	}
}

// kernel makes the kernel steps of the plan's flavour: the config (for
// flavours built from source) and the kernel.
func (p *Plan) kernel(lock []LockedDeb) error {
	image, err := p.lockedDebs(lock, "linux-image-[0-9]*")
	if err != nil {
		return err
	}
	f := p.Flavour
	if f == settings.KernelDebian {
		p.Kernel = &step.Step{
			Name:      "kernel-debian",
			Toolchain: ImageToolchain,
			Inputs: []step.Input{
				{Name: "kernel", Path: "kernel", Include: []string{"build.sh"}},
				{Name: "debs", Downloads: image},
			},
			Commands: [][]string{{"sh", "/in/kernel/build.sh", "debian"}},
			Outputs:  kernelOutputs,
		}
		return nil
	}
	frags, ok := KernelFragments[f]
	if !ok {
		return fmt.Errorf("KERNEL=%s: no such flavour (%v)", f, KernelFlavours)
	}
	names := []string{"linux-source-6.12"}
	if f == settings.KernelFull {
		names = append(names, "linux-config-6.12")
	}
	src, err := p.lockedDebs(lock, names...)
	if err != nil {
		return err
	}
	// The config step reads only its flavour's fragments: a change to
	// another flavour's fragment or to a README rebuilds nothing.
	include := []string{"build.sh", "patches"}
	var fragFiles []string
	for _, fr := range frags {
		include = append(include, "config/"+fr)
		fragFiles = append(fragFiles, p.file(filepath.Join("kernel", "config", fr)))
	}
	p.KernelConfig = &step.Step{
		Name:      "kernel-config-" + f,
		Toolchain: KernelToolchain,
		Inputs: []step.Input{
			{Name: "kernel", Path: "kernel", Include: include},
			{Name: "source", Downloads: src},
		},
		Commands: [][]string{{"sh", "/in/kernel/build.sh", "config", f}},
		Outputs:  []string{"config", "flavour"},
		// The Go check of every fragment's options and of the lists, before
		// the long build.
		Check: func(out string) error {
			final := filepath.Join(out, "config")
			problems, err := kconfig.CheckFiles(final, fragFiles...)
			if err != nil {
				return err
			}
			lp, err := kconfig.CheckLists(final, kernelLists[f]...)
			if err != nil {
				return err
			}
			var errs []error
			for _, pr := range append(problems, lp...) {
				errs = append(errs, pr)
			}
			return errors.Join(errs...)
		},
	}
	p.Kernel = &step.Step{
		Name:      "kernel-" + f,
		Toolchain: KernelToolchain,
		Inputs: []step.Input{
			{Name: "kernel", Path: "kernel", Include: []string{"build.sh", "patches"}},
			{Name: "config", Step: p.KernelConfig},
			{Name: "source", Downloads: src[:1]},
			{Name: "debs", Downloads: image}, // the Pi device trees, for flavours that build none
		},
		Commands: [][]string{{"sh", "/in/kernel/build.sh", "build"}},
		Env:      map[string]string{},
		Caches:   []string{"ccache"},
		Outputs:  kernelOutputs,
	}
	if p.KernelLocalVersion != "" {
		p.Kernel.Env["LOCALVERSION"] = p.KernelLocalVersion
	}
	if f != settings.KernelReduced {
		p.Kernel.Check = func(out string) error { return hasSymbol(filepath.Join(out, "System.map"), TrybootSymbol) }
	}
	return nil
}

// hasSymbol says whether a System.map names a function.
func hasSymbol(systemMap, name string) error {
	b, err := os.ReadFile(systemMap)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == name {
			return nil
		}
	}
	return fmt.Errorf("%s: no %s: the kernel lacks the tryboot patch (kernel/patches), so an upgrade could not try a version once", systemMap, name)
}
