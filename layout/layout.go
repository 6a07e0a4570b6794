// Package layout is the card's layout, defined once: its partitions and
// labels, what the Pi firmware reads from them, and where the state
// partition keeps system versions, persistent data and node configs. The
// image build (through the image step's environment), the initramfs, the
// upgrade, the image reader and the boot test all take it from here.
//
// The card is A/B: two boot partitions, each a whole system version's boot
// files (firmware, kernel, initramfs, device trees, config.txt and a
// cmdline.txt naming the version and the node config), and a small first
// partition whose autoboot.txt says which one the firmware boots, and which
// one a try-once boot (tryboot) tries.
package layout

import (
	"strconv"
	"strings"
)

// Partitions of the card (MBR).
const (
	AlignMiB = 4 // the first partition starts here (SD erase-block aligned)

	// AutobootPartition holds autoboot.txt alone: the Pi firmware reads it
	// from the first partition. FAT32 (36 MiB is about its smallest), as
	// the slots, so that one FAT reader serves all three.
	AutobootPartition = 1
	AutobootLabel     = "K3OS_AB"
	AutobootMiB       = 36
	AutobootFile      = "autoboot.txt"

	// BootA and BootB are the two boot slots (FAT32). A slot is written
	// whole from a version's boot image, so both carry one label.
	BootA, BootB = 2, 3
	BootLabel    = "K3OS_BOOT"
	BootMiB      = 128

	StatePartition = 4
	StateLabel     = "K3OS_STATE" // ext4, grown to the card on first boot
	// StateSlackMiB is the free space of the state filesystem as built.
	StateSlackMiB = 64

	// Fixed identifiers: the same inputs give the same bytes.
	DiskID    = "0x4b334f53"
	StateUUID = "6b336f73-7374-6174-652d-706172743200"
)

// The state partition's tree.
const (
	// SystemDir holds one directory per system version: rootfs.squashfs,
	// modules.squashfs, boot.vfat (its boot slot's image), k3os-release.
	SystemDir = "k3os/system"
	// BootImage is a version's boot slot, kept to write a slot again.
	BootImage = "boot.vfat"
	// VersionImages, in a version's directory, holds the image tarballs
	// its k3s imports at start (K3S_IMAGES): they change with the version.
	VersionImages = "images"
	// ClusterImagesDir holds the cluster's own image tarballs (its
	// workloads', CONFIG_DIR/images), kept across upgrades.
	ClusterImagesDir = "k3os/images"
	// DataDir holds what persists: etc/<version>, var, rancher, home.
	DataDir = "k3os/data"
	// ConfigDir holds the node configs the card was built with, every
	// node's, until the card's first boot keeps its own and wipes them.
	ConfigDir = "config"
	// NodeConfigDir holds the node's own configs, <id>.yaml: CardConfig
	// the one the card's first boot kept, others from upgrades.
	NodeConfigDir = "k3os/config"
	CardConfig    = "card"
	// UpgradeDir holds an upgrade's staging and its record.
	UpgradeDir = "k3os/upgrade"
	// TrustDir holds the public keys (*.pub) upgrade bundles must be
	// signed with.
	TrustDir = "k3os/trust"
)

// StateMount is where the booted system has the state partition.
const StateMount = "/k3os/state"

// Kernel command line parameters of a boot slot: the system version its
// kernel belongs to, and the node config to use.
const (
	SystemParam = "k3os.system"
	ConfigParam = "k3os.config"
)

// Autoboot is autoboot.txt for a card whose committed slot is boot and
// whose try-once slot is try (tryboot_a_b: the tried partition reads its
// own config.txt).
func Autoboot(boot, try int) string {
	return "[all]\ntryboot_a_b=1\nboot_partition=" + strconv.Itoa(boot) + "\n[tryboot]\nboot_partition=" + strconv.Itoa(try) + "\n"
}

// ParseAutoboot reads autoboot.txt as the Pi firmware does: the
// boot_partition of [all], and the one a try-once boot takes instead (a
// [tryboot] section's, else the same); [none] sections are skipped.
func ParseAutoboot(text string) (boot, try int) {
	section := "all"
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")
			continue
		}
		v, ok := strings.CutPrefix(line, "boot_partition=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			continue
		}
		switch section {
		case "all":
			boot = n
		case "tryboot":
			try = n
		}
	}
	if try == 0 {
		try = boot
	}
	return boot, try
}

// OtherSlot is the boot slot that is not slot.
func OtherSlot(slot int) int {
	if slot == BootA {
		return BootB
	}
	return BootA
}

// Env is the layout as the image steps' environment, for the script that
// writes the card.
func Env() map[string]string {
	return map[string]string{
		"ALIGN_MIB":       strconv.Itoa(AlignMiB),
		"AUTOBOOT_LABEL":  AutobootLabel,
		"AUTOBOOT_MIB":    strconv.Itoa(AutobootMiB),
		"AUTOBOOT":        Autoboot(BootA, BootB),
		"BOOT_LABEL":      BootLabel,
		"BOOT_MIB":        strconv.Itoa(BootMiB),
		"STATE_LABEL":     StateLabel,
		"STATE_SLACK_MIB": strconv.Itoa(StateSlackMiB),
		"DISK_ID":         DiskID,
		"STATE_UUID":      StateUUID,
		"SYSTEM_DIR":      SystemDir,
		"BOOT_IMAGE":      BootImage,
		"VERSION_IMAGES":  VersionImages,
		"CLUSTER_IMAGES":  ClusterImagesDir,
		"DATA_DIR":        DataDir,
		"CONFIG_DIR":      ConfigDir,
		"TRUST_DIR":       TrustDir,
		"SYSTEM_PARAM":    SystemParam,
		"CONFIG_PARAM":    ConfigParam,
		"CARD_CONFIG":     CardConfig,
	}
}
