// Package boot is the initramfs stage of the agent (/init): it loads the
// modules that reach the disks, mounts the state partition by label, picks
// the node's config by the MAC of its wired interface, mounts the active
// read-only root with a writable /etc and persistent /var and /home from the
// state partition, runs init_cmd, and switches to the new root.
package boot

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/k3os-rpi/k3os-rpi4/agent/durable"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// Paths in the initramfs and in the new root.
const (
	stateMnt = "/state"
	newRoot  = "/newroot"
	// RunDir is where init leaves the chosen config and the boot record
	// for the apply service (the /run tmpfs moves into the new root).
	RunDir = "/run/k3os"
)

// Record is what init found, written to /run/k3os/boot.json.
type Record struct {
	// Version is the system version running, as the boot slot names it;
	// Config the node config's id (the card's own, or an upgrade's).
	Version string `json:"version"`
	Config  string `json:"config"`
	// Slot is the boot partition the firmware booted; Trial says it was a
	// try-once boot (an upgrade not committed yet).
	Slot  int  `json:"slot"`
	Trial bool `json:"trial"`
	// Kernel is the running kernel's release.
	Kernel     string `json:"kernel"`
	MAC        string `json:"mac"`
	Interface  string `json:"interface"`
	ConfigFile string `json:"config_file"`
	// Unconfigured says why the node boots without a config, if it does.
	Unconfigured string  `json:"unconfigured,omitempty"`
	StateDevice  string  `json:"state_device"`
	Seconds      float64 `json:"seconds"`
}

// Init is the initramfs stage. It returns only on failure.
type Init struct {
	Console io.Writer
	start   time.Time
}

func (in *Init) say(format string, args ...any) {
	fmt.Fprintf(in.Console, "k3os-init: "+format+"\n", args...)
}

// Run does the whole stage and execs the new root's init.
func (in *Init) Run() error {
	in.start = time.Now()
	if err := earlyMounts(); err != nil {
		return err
	}
	if n, err := loadModules("/lib/modules/load.list"); err != nil {
		in.say("modules: %v", err)
	} else {
		in.say("loaded %d modules", n)
	}
	label := layout.StateLabel
	if v, ok := strings.CutPrefix(kernelCmdline("root"), "LABEL="); ok {
		label = v
	}
	dev, err := waitForLabel(label, 60*time.Second)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateMnt, 0o755); err != nil {
		return err
	}
	if err := mountFS(dev, stateMnt, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting the state partition %s: %w", dev, err)
	}
	in.say("state partition %s mounted", dev)
	rec := Record{StateDevice: dev, Version: kernelCmdline(layout.SystemParam), Config: kernelCmdline(layout.ConfigParam), Kernel: kernelRelease()}
	rec.Slot, rec.Trial = Bootloader("/proc/device-tree/chosen/bootloader")
	if rec.Version == "" {
		return fmt.Errorf("the boot slot names no system version (%s= on its cmdline.txt)", layout.SystemParam)
	}
	if rec.Config == "" {
		rec.Config = layout.CardConfig
	}
	rec.Interface, rec.MAC = waitForMAC(10 * time.Second)
	own, picked := "", ""
	if rec.Config == layout.CardConfig {
		if own, picked, err = claimConfig(stateMnt, rec.MAC); err != nil {
			in.say("the card's node configs: %v", err)
		}
	} else if p := filepath.Join(stateMnt, layout.NodeConfigDir, rec.Config+".yaml"); exists(p) {
		own = p
	}
	rec.ConfigFile = own
	var cfg *nodeconfig.Config
	switch {
	case rec.Config != layout.CardConfig && rec.ConfigFile == "":
		rec.Unconfigured = fmt.Sprintf("the boot slot names the config %s, which is not in %s", rec.Config, layout.NodeConfigDir)
	case rec.MAC == "" && rec.ConfigFile == "":
		rec.Unconfigured = "no wired interface found and no default.yaml"
	case rec.ConfigFile == "":
		rec.Unconfigured = fmt.Sprintf("no config/%s.yaml and no config/default.yaml on the card", rec.MAC)
	default:
		cfg, err = readConfig(rec.ConfigFile)
		if err != nil {
			rec.Unconfigured = err.Error()
			rec.ConfigFile = ""
		}
	}
	if rec.Unconfigured != "" {
		in.say("UNCONFIGURED BOOT: %s; the node starts with root locked and no way in; add its config and reflash", rec.Unconfigured)
	} else if picked != "" {
		in.say("node %s (%s): config %s, kept as %s; the card's other node configs are wiped", rec.MAC, rec.Interface,
			filepath.Base(picked), filepath.Join(layout.NodeConfigDir, filepath.Base(own)))
	} else {
		in.say("node %s (%s): config %s", rec.MAC, rec.Interface, filepath.Join(layout.NodeConfigDir, filepath.Base(own)))
	}
	if err := writeRun(rec, rec.ConfigFile); err != nil {
		return err
	}
	if err := in.mountRoot(rec.Version); err != nil {
		return err
	}
	if cfg != nil {
		for _, c := range cfg.InitCmd {
			in.say("init_cmd: %s", c)
			if err := runIn(newRoot, c, in.Console); err != nil {
				in.say("init_cmd failed: %v", err)
			}
		}
	}
	rec.Seconds = time.Since(in.start).Seconds()
	trial := ""
	if rec.Trial {
		trial = ", a trial"
	}
	in.say("switching to k3os %s (kernel %s, slot %d%s) after %.1fs", rec.Version, rec.Kernel, rec.Slot, trial, rec.Seconds)
	return switchRoot(newRoot, "/sbin/init")
}

func readConfig(file string) (*nodeconfig.Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	d, r := nodeconfig.Parse(file, data)
	if r.HasErrors() {
		return nil, fmt.Errorf("config %s is invalid: %v", filepath.Base(file), r.Err())
	}
	return &d.Config, nil
}

// writeRun leaves the boot record and the chosen config in /run/k3os.
func writeRun(rec Record, configFile string) error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(RunDir, "config.yaml"), data, 0o600); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	return os.WriteFile(filepath.Join(RunDir, "boot.json"), b, 0o644)
}

// mountRoot mounts the version's read-only root at /newroot with its
// writable and persistent parts from the state partition.
func (in *Init) mountRoot(version string) error {
	sys := filepath.Join(stateMnt, layout.SystemDir, version)
	data := filepath.Join(stateMnt, layout.DataDir)
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := mountImage(filepath.Join(sys, "rootfs.squashfs"), newRoot); err != nil {
		return fmt.Errorf("mounting the root of %s: %w", version, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "modules.squashfs")); err == nil {
		if err := mountImage(filepath.Join(sys, "modules.squashfs"), newRoot+"/usr/lib/modules"); err != nil {
			return fmt.Errorf("mounting the kernel modules: %w", err)
		}
	}
	// /etc: an overlay per version, so that an upgrade starts from the new
	// version's /etc (the agent re-applies the config on every boot).
	etc := filepath.Join(data, "etc", version)
	if err := overlay(newRoot+"/etc", etc); err != nil {
		return err
	}
	// /var persists whole; what needs a real filesystem below it (the
	// container runtimes' overlay snapshots) is bound from ext4 directly.
	if err := overlay(newRoot+"/var", filepath.Join(data, "var")); err != nil {
		return err
	}
	// What identifies the node outlives a version's /etc: the machine id
	// (systemd-networkd's DHCP client id and the journal derive from it)
	// and k3s's node password (the server knows the node by it).
	id, err := machineID(data, etc)
	if err != nil {
		return err
	}
	if err := unix.Mount(id, newRoot+"/etc/machine-id", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding /etc/machine-id: %w", err)
	}
	for _, b := range []struct{ src, dst string }{
		{"rancher", "/var/lib/rancher"},
		{"containerd", "/var/lib/containerd"},
		{"home", "/home"},
		{"rancher-node", "/etc/rancher/node"},
	} {
		src := filepath.Join(data, b.src)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(newRoot+b.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, newRoot+b.dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", b.dst, err)
		}
	}
	// The state partition stays visible at /k3os/state (config, upgrades).
	if err := os.MkdirAll(newRoot+layout.StateMount, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
		return err
	}
	return unix.Mount(stateMnt, newRoot+layout.StateMount, "", unix.MS_MOVE, "")
}

// machineID returns the node's machine id file in the state's data
// directory, made on the first boot: the one systemd committed into this
// version's /etc if there is one (a card from before), else a new one.
func machineID(data, etc string) (string, error) {
	p := filepath.Join(data, "machine-id")
	if b, err := os.ReadFile(p); err == nil && validMachineID(b) {
		return p, nil
	}
	id, err := os.ReadFile(filepath.Join(etc, "upper", "machine-id"))
	if err != nil || !validMachineID(id) {
		uuid, err := os.ReadFile("/proc/sys/kernel/random/uuid")
		if err != nil {
			return "", err
		}
		id = []byte(strings.ReplaceAll(strings.TrimSpace(string(uuid)), "-", "") + "\n")
	}
	return p, durable.WriteFile(p, id, 0o444)
}

func validMachineID(b []byte) bool {
	s := strings.TrimSpace(string(b))
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func overlay(target, dir string) error {
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", target, upper, work)
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay on %s: %w", target, err)
	}
	return nil
}

// Bootloader reads what the Raspberry Pi firmware says of this boot, in
// the device tree's /chosen/bootloader (dir): the partition it booted and
// whether it was a try-once boot (its properties are big-endian u32s).
// Without the node (another board, or QEMU without the boot test's
// firmware model) it is slot 0, no trial.
func Bootloader(dir string) (slot int, trial bool) {
	u32 := func(name string) uint32 {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || len(b) < 4 {
			return 0
		}
		return binary.BigEndian.Uint32(b)
	}
	return int(u32("partition")), u32("tryboot") == 1
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Fail reports a fatal error on the console and, since PID 1 must not
// exit, reboots after a pause (QEMU with -no-reboot then stops).
func Fail(console io.Writer, err error) {
	fmt.Fprintf(console, "k3os-init: FATAL: %v\n", err)
	fmt.Fprintln(console, "k3os-init: rebooting in 30s")
	time.Sleep(30 * time.Second)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// kernelCmdline returns the value of a kernel parameter.
func kernelCmdline(key string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
