// Package layout is the card's layout, defined once: its partitions and
// labels, and where the state partition keeps system versions, persistent
// data and node configs. The image build (through the image step's
// environment), the initramfs, the image reader and the boot test all take
// it from here.
package layout

import "strconv"

// Partitions of the card (MBR).
const (
	AlignMiB = 4 // the first partition starts here (SD erase-block aligned)

	BootPartition = 1
	BootLabel     = "K3OS_BOOT"
	BootMiB       = 256 // FAT32: Pi firmware, kernel, initramfs, device trees

	StatePartition = 2
	StateLabel     = "K3OS_STATE" // ext4, grown to the card on first boot
	// StateSlackMiB is the free space of the state filesystem as built.
	StateSlackMiB = 64

	// Fixed identifiers: the same inputs give the same bytes.
	DiskID    = "0x4b334f53"
	StateUUID = "6b336f73-7374-6174-652d-706172743200"
)

// The state partition's tree.
const (
	// SystemDir holds one directory per system version (rootfs.squashfs,
	// modules.squashfs, k3os-release) and the link CurrentLink.
	SystemDir   = "k3os/system"
	CurrentLink = "current"
	// DataDir holds what persists: etc/<version>, var, rancher, home.
	DataDir = "k3os/data"
	// ConfigDir holds the node configs.
	ConfigDir = "config"
)

// StateMount is where the booted system has the state partition.
const StateMount = "/k3os/state"

// Env is the layout as the image step's environment, for the script that
// writes the card.
func Env() map[string]string {
	return map[string]string{
		"ALIGN_MIB":       strconv.Itoa(AlignMiB),
		"BOOT_LABEL":      BootLabel,
		"BOOT_MIB":        strconv.Itoa(BootMiB),
		"STATE_LABEL":     StateLabel,
		"STATE_SLACK_MIB": strconv.Itoa(StateSlackMiB),
		"DISK_ID":         DiskID,
		"STATE_UUID":      StateUUID,
		"SYSTEM_DIR":      SystemDir,
		"CURRENT_LINK":    CurrentLink,
		"DATA_DIR":        DataDir,
		"CONFIG_DIR":      ConfigDir,
	}
}
