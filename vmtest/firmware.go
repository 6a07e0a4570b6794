package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// QEMU's virt machine boots a kernel it is given; on a Pi the firmware
// picks what to boot from the card. firmware does that pick for a virt
// machine, from the machine's own disk, by the rules the Pi firmware
// documents:
//
//   - autoboot.txt on partition 1 names the boot partition ([all]) and the
//     one a try-once boot takes ([tryboot]; tryboot_a_b=1 makes that one
//     read its own config.txt);
//   - the try-once flag is one-shot: a restart whose command holds
//     "tryboot" sets it (on a Pi, our kernel's reboot notifier tells the
//     firmware; here the kernel's own "Restarting system with command"
//     line on the console stands for that call), and the next boot clears
//     it, whatever then happens to that boot: a panic, a hang or a power
//     cut brings the normal boot back;
//   - the partition's config.txt names the kernel and the initramfs, its
//     cmdline.txt the command line;
//   - the firmware tells the kernel, in the device tree's
//     /chosen/bootloader, the partition it booted and whether it tried.
//
// What only a Pi can show: the firmware really parsing these files, the
// flag surviving the reset on a given EEPROM, torn writes of an SD card.

// restartLine is what the kernel prints on a restart with a command.
const restartLine = "reboot: Restarting system with command '"

// triedFlag says whether the console of a run asks for a try-once boot.
func triedFlag(console string) bool {
	i := strings.LastIndex(console, restartLine)
	if i < 0 {
		return false
	}
	cmd, _, _ := strings.Cut(console[i+len(restartLine):], "'")
	for _, w := range strings.Fields(cmd) {
		if w == "tryboot" {
			return true
		}
	}
	return false
}

// firmwareBoot is what the firmware picked for one boot.
type firmwareBoot struct {
	Slot    int
	Tryboot bool
	Cmdline string
}

// Bootloader capabilities the boot test's firmware reports (bit 2: A/B
// tryboot, bit 3: tryboot), and the EEPROM build date: 2024-09-10.
const (
	modelCapabilities   = 0x0c
	modelBuildTimestamp = 1725926400
)

// pickBoot reads the machine's disk (QEMU not running) and prepares what
// the firmware would boot: the kernel, initramfs and a device tree with
// /chosen/bootloader in the machine's directory, and the command line.
func (m *Machine) pickBoot(ctx context.Context) (firmwareBoot, error) {
	disk := m.diskPath()
	ab, err := diskimage.ReadBootFile(disk, layout.AutobootPartition, layout.AutobootFile)
	if err != nil {
		return firmwareBoot{}, fmt.Errorf("the firmware finds no %s: %w", layout.AutobootFile, err)
	}
	b := firmwareBoot{Tryboot: m.tryNext}
	m.tryNext = false // one-shot: this boot clears it
	boot, try := layout.ParseAutoboot(string(ab))
	b.Slot = boot
	if b.Tryboot {
		b.Slot = try
	}
	cfg, err := diskimage.ReadBootFile(disk, b.Slot, "config.txt")
	if err != nil {
		return b, fmt.Errorf("slot %d holds nothing to boot: %w", b.Slot, err)
	}
	kernel, initrd := configTxt(string(cfg))
	cmdline, err := diskimage.ReadBootFile(disk, b.Slot, "cmdline.txt")
	if err != nil {
		return b, err
	}
	for from, to := range map[string]string{kernel: "Image", initrd: "initrd.img"} {
		data, err := diskimage.ReadBootFile(disk, b.Slot, from)
		if err != nil {
			return b, err
		}
		if err := os.WriteFile(filepath.Join(m.Dir, to), data, 0o644); err != nil {
			return b, err
		}
	}
	b.Cmdline, err = virtCmdline(string(cmdline))
	if err != nil {
		return b, fmt.Errorf("slot %d: %w", b.Slot, err)
	}
	// The device tree QEMU makes for this machine, with what the firmware
	// adds to it.
	tryboot := 0
	if b.Tryboot {
		tryboot = 1
	}
	dtb := fmt.Sprintf(`set -e
[ -e /tmp/vm/virt.dtb ] || qemu-system-aarch64 -M virt,dumpdtb=/tmp/vm/virt.dtb -cpu cortex-a72 -smp 2 -m %s -display none -nic none >/dev/null
cp /tmp/vm/virt.dtb /tmp/vm/board.dtb
fdtput -c /tmp/vm/board.dtb /chosen/bootloader
fdtput -t u /tmp/vm/board.dtb /chosen/bootloader tryboot %d
fdtput -t u /tmp/vm/board.dtb /chosen/bootloader partition %d
fdtput -t u /tmp/vm/board.dtb /chosen/bootloader capabilities %d
fdtput -t u /tmp/vm/board.dtb /chosen/bootloader build-timestamp %d`, m.memory(), tryboot, b.Slot, modelCapabilities, modelBuildTimestamp)
	if err := m.tool(ctx, "sh", "-c", dtb); err != nil {
		return b, err
	}
	return b, nil
}

// configTxt reads the kernel and initramfs a config.txt names ([pi4] and
// [all] sections: the ones a Pi 4 reads).
func configTxt(text string) (kernel, initrd string) {
	kernel, section := "kernel8.img", "all"
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section != "all" && section != "pi4":
		case strings.HasPrefix(line, "kernel="):
			kernel = strings.TrimPrefix(line, "kernel=")
		case strings.HasPrefix(line, "initramfs "):
			initrd = strings.Fields(line)[1]
		}
	}
	return kernel, initrd
}

// virtCmdline is a slot's command line with the console moved to the
// virt machine's serial port, and the kernel's messages shown.
func virtCmdline(cmdline string) (string, error) {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, "console=") && f != "quiet" {
			out = append(out, f)
		}
	}
	if !strings.Contains(cmdline, "cgroup_enable=memory") {
		return "", fmt.Errorf("cmdline.txt lacks cgroup_enable=memory: %s", cmdline)
	}
	return strings.Join(append(out, "console=ttyAMA0,115200"), " "), nil
}
