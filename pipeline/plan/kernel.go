package plan

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/k3os-rpi/k3os-rpi4/kconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// KernelLockFile pins the kernel, kernel source and Pi firmware packages.
const KernelLockFile = "kernel/kernel.lock"

// kernelFragments are the config fragments of each flavour built from
// source, in merge order.
var kernelFragments = map[string][]string{
	settings.KernelFull:    {"rpi4.config", "k3s.config", "qemu-virt.config", "nodebug.config"},
	settings.KernelReduced: {"reduced.config", "k3s.config", "qemu-virt.config"},
}

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
	frags, ok := kernelFragments[f]
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
	var fragFiles []string
	for _, fr := range frags {
		fragFiles = append(fragFiles, p.file(filepath.Join("kernel", "config", fr)))
	}
	p.KernelConfig = &step.Step{
		Name:      "kernel-config-" + f,
		Toolchain: KernelToolchain,
		Inputs: []step.Input{
			{Name: "kernel", Path: "kernel", Include: []string{"build.sh", "config"}},
			{Name: "source", Downloads: src},
		},
		Commands: [][]string{{"sh", "/in/kernel/build.sh", "config", f}},
		Outputs:  []string{"config", "flavour"},
		// The Go check of every fragment's options, before the long build.
		Check: func(out string) error {
			problems, err := kconfig.CheckFiles(filepath.Join(out, "config"), fragFiles...)
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
	p.Kernel = &step.Step{
		Name:      "kernel-" + f,
		Toolchain: KernelToolchain,
		Inputs: []step.Input{
			{Name: "kernel", Path: "kernel", Include: []string{"build.sh"}},
			{Name: "config", Step: p.KernelConfig},
			{Name: "source", Downloads: src[:1]},
			{Name: "debs", Downloads: image}, // the Pi device trees, for flavours that build none
		},
		Commands: [][]string{{"sh", "/in/kernel/build.sh", "build"}},
		Caches:   []string{"ccache"},
		Outputs:  kernelOutputs,
	}
	return nil
}
