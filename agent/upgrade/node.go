// Package upgrade changes a running node's system version, A/B: it checks
// a signed bundle, stages the new version beside the running one, writes
// it into the other boot slot and reboots into it once (the Pi firmware's
// tryboot); the trial boot commits it only when the node is healthy, and
// any other outcome (a panic, a hang, a failed health check, a power cut)
// leaves the committed slot, the previous version, to boot next. It also
// rolls back by hand and reports what the node runs.
package upgrade

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/k3os-rpi/k3os-rpi4/agent/durable"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/k3os-rpi/k3os-rpi4/agent/boot"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// Node is the running node, as the upgrade sees it. Tests make one over
// files in a temporary directory.
type Node struct {
	// State is where the state partition is mounted (/k3os/state).
	State string
	// Boot is what the initramfs found at this boot.
	Boot boot.Record
	// Partition returns the block device of partition n of the card.
	Partition func(n int) (string, error)
	// Bootloader is the firmware's /chosen/bootloader directory.
	Bootloader string
	// KernelConfig is the running kernel's config (/proc/config.gz).
	KernelConfig string
	// OpenFAT opens a FAT partition's files (the autoboot partition, a boot
	// slot); the function returned closes it. MountFAT on a node.
	OpenFAT func(dev string, write bool) (FAT, func() error, error)
	// Reboot restarts the node with a reboot command ("0 tryboot"), or
	// none.
	Reboot func(arg string) error
	// RebootParam is where systemd takes the next reboot's command from
	// (/run/systemd/reboot-param).
	RebootParam string
	// Out receives what a person reads; Log the structured log.
	Out io.Writer
	Log logrus.FieldLogger
	// Mark, when set, announces a phase of an upgrade where it shows on
	// the console (the kernel log), for a person at a Pi's screen and for
	// the boot test's power cuts.
	Mark func(phase string)
}

func (n *Node) say(format string, args ...any) {
	fmt.Fprintf(n.Out, format+"\n", args...)
}

func (n *Node) mark(format string, args ...any) {
	if n.Mark != nil {
		n.Mark(fmt.Sprintf(format, args...))
	}
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.State}, parts...)...)
}

// Trial is an upgrade being tried.
type Trial struct {
	Version string `json:"version"`
	Config  string `json:"config"`
	Slot    int    `json:"slot"`
	// From is what ran when the trial was armed.
	FromVersion string `json:"from_version"`
	FromConfig  string `json:"from_config"`
	FromSlot    int    `json:"from_slot"`
	Armed       time.Time
	// HealthTimeout bounds how long the trial boot may take to be healthy.
	HealthTimeout time.Duration `json:"health_timeout_ns"`
	// Failed is why the trial's health check failed, when it did.
	Failed string `json:"failed,omitempty"`
}

// Outcome is how the last upgrade or rollback ended.
type Outcome struct {
	Version string    `json:"version"`
	Config  string    `json:"config"`
	Result  string    `json:"result"` // committed, rolled back
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Record is what the node keeps of its upgrades (k3os/upgrade/record.json).
// What the firmware boots is autoboot.txt's alone: the record says why.
type Record struct {
	Trial *Trial   `json:"trial,omitempty"`
	Last  *Outcome `json:"last,omitempty"`
	// Previous is what was committed before the committed version: what
	// a rollback by hand goes back to. It is kept on the node until the
	// next commit.
	Previous *Held `json:"previous,omitempty"`
}

func (n *Node) recordFile() string { return n.path(layout.UpgradeDir, "record.json") }

// ReadRecord reads the record; none yet is an empty one.
func (n *Node) ReadRecord() (Record, error) {
	var r Record
	b, err := os.ReadFile(n.recordFile())
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func (n *Node) writeRecord(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(n.recordFile(), append(b, '\n'), 0o644)
}

// Slots says which boot slot the firmware boots and which one it tries.
func (n *Node) Slots() (committed, other int, err error) {
	dev, err := n.Partition(layout.AutobootPartition)
	if err != nil {
		return 0, 0, err
	}
	var text []byte
	err = n.readFAT(dev, func(f FAT) error {
		text, err = f.ReadFile(layout.AutobootFile)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", layout.AutobootFile, err)
	}
	boot, _ := layout.ParseAutoboot(string(text))
	if boot != layout.BootA && boot != layout.BootB {
		return 0, 0, fmt.Errorf("%s boots partition %d, not a boot slot", layout.AutobootFile, boot)
	}
	return boot, layout.OtherSlot(boot), nil
}

// Committed is Slots, with the version and config the committed slot
// holds.
func (n *Node) Committed() (committed, other int, version, config string, err error) {
	if committed, other, err = n.Slots(); err != nil {
		return 0, 0, "", "", err
	}
	version, config, err = n.SlotHolds(committed)
	return committed, other, version, config, err
}

// SlotHolds reads the version and config a slot's cmdline.txt names ("",
// "" when the slot is empty).
func (n *Node) SlotHolds(slot int) (version, config string, err error) {
	dev, err := n.Partition(slot)
	if err != nil {
		return "", "", err
	}
	err = n.readFAT(dev, func(f FAT) error {
		b, err := f.ReadFile("cmdline.txt")
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		version, config = param(string(b), layout.SystemParam), param(string(b), layout.ConfigParam)
		return err
	})
	return version, config, err
}

func param(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// FAT is the files of a FAT partition.
type FAT interface {
	ReadFile(name string) ([]byte, error)
	// WriteFile replaces a file whole: after a power cut it is the old
	// file or the new one.
	WriteFile(name string, data []byte) error
}

// readFAT opens a FAT partition read-only for f, and closes it: reading
// changes nothing on the card. writeFAT opens it to write.
func (n *Node) readFAT(dev string, f func(FAT) error) error { return n.withFAT(dev, false, f) }

func (n *Node) writeFAT(dev string, f func(FAT) error) error { return n.withFAT(dev, true, f) }

func (n *Node) withFAT(dev string, write bool, f func(FAT) error) error {
	fat, closeFAT, err := n.OpenFAT(dev, write)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dev, err)
	}
	ferr := f(fat)
	if err := closeFAT(); ferr == nil {
		ferr = err
	}
	return ferr
}

// Keys are the public keys upgrades must be signed with (k3os/trust).
func (n *Node) Keys() ([]minisign.PublicKey, error) {
	files, err := filepath.Glob(n.path(layout.TrustDir, "*.pub"))
	if err != nil {
		return nil, err
	}
	var keys []minisign.PublicKey
	for _, f := range files {
		k, err := minisign.PublicKeyFromFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Minimum firmware for A/B boot slots with a try-once boot:
// tryboot_a_b and [tryboot] in autoboot.txt became the Pi 4 EEPROM's
// default in pieeprom-2022-11-25 (raspberrypi/documentation, bootflow-eeprom).
const (
	MinEEPROM        = "2022-11-25"
	minEEPROMStamp   = 1669334400
	capTrybootAB     = 1 << 2
	capTryboot       = 1 << 3
	trybootConfigKey = "CONFIG_RASPBERRYPI_FIRMWARE_TRYBOOT=y"
)

func u32(dir, name string) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || len(b) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

// CanTry says whether this node can boot a version once and fall back:
// the firmware must offer the A/B try-once boot and the running kernel
// must be able to ask for it.
func (n *Node) CanTry() error {
	if _, err := os.Stat(n.Bootloader); err != nil {
		return fmt.Errorf("the firmware says nothing of its boot (no %s): not a Raspberry Pi 4 with its EEPROM firmware", n.Bootloader)
	}
	caps, hasCaps := u32(n.Bootloader, "capabilities")
	stamp, hasStamp := u32(n.Bootloader, "build-timestamp")
	switch {
	case hasCaps && caps&capTrybootAB != 0 && caps&capTryboot != 0:
	case !hasCaps && hasStamp && stamp >= minEEPROMStamp:
	default:
		built := "unknown"
		if hasStamp {
			built = time.Unix(int64(stamp), 0).UTC().Format("2006-01-02")
		}
		return fmt.Errorf("the bootloader EEPROM (built %s) offers no A/B try-once boot: update it to %s or later (rpi-eeprom-update -a, or Raspberry Pi Imager's bootloader image)", built, MinEEPROM)
	}
	f, err := os.Open(n.KernelConfig)
	if err != nil {
		return fmt.Errorf("the running kernel (%s) does not say whether it can ask for a try-once boot (no %s): rebuild with KERNEL=pi", n.Boot.Kernel, n.KernelConfig)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "\n"+trybootConfigKey+"\n") {
		return fmt.Errorf("the running kernel (%s) cannot ask the firmware for a try-once boot (Debian's cannot): rebuild the image with KERNEL=pi or KERNEL=full", n.Boot.Kernel)
	}
	return nil
}

// MountFAT returns an OpenFAT that mounts a partition below dir with the
// kernel's vfat, read-only unless to write (no access times either way):
// a file is written through a synced temporary file and a rename, then
// the directory is synced.
func MountFAT(dir string) func(dev string, write bool) (FAT, func() error, error) {
	return func(dev string, write bool) (FAT, func() error, error) {
		mnt := filepath.Join(dir, filepath.Base(dev))
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return nil, nil, err
		}
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME)
		if !write {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount(dev, mnt, "vfat", flags, "flush"); err != nil {
			return nil, nil, err
		}
		return mountedFAT(mnt), func() error { return unix.Unmount(mnt, 0) }, nil
	}
}

type mountedFAT string

func (d mountedFAT) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d mountedFAT) WriteFile(name string, data []byte) error {
	return durable.WriteFile(filepath.Join(string(d), name), data, 0o644)
}

// PartitionOf returns, for the partition dev (/dev/mmcblk0p4), a function
// giving its disk's partition n, found through sysfs (sysBlock is
// /sys/class/block).
func PartitionOf(sysBlock, dev string) func(n int) (string, error) {
	return func(n int) (string, error) {
		link, err := filepath.EvalSymlinks(filepath.Join(sysBlock, filepath.Base(dev)))
		if err != nil {
			return "", err
		}
		diskDir := filepath.Dir(link)
		parts, _ := filepath.Glob(filepath.Join(diskDir, filepath.Base(diskDir)+"*"))
		for _, p := range parts {
			b, err := os.ReadFile(filepath.Join(p, "partition"))
			if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(n) {
				return "/dev/" + filepath.Base(p), nil
			}
		}
		return "", fmt.Errorf("the card %s has no partition %d", filepath.Base(diskDir), n)
	}
}
