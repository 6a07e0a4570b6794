package boot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// earlyMounts gives the initramfs the kernel's filesystems.
func earlyMounts() error {
	for _, m := range []struct{ src, dst, fs, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s: %w", m.dst, err)
		}
	}
	return nil
}

// loadModules loads kernel modules listed (paths, dependencies first) in
// list. A module already loaded or built in is fine.
func loadModules(list string) (int, error) {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // a kernel with everything built in
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		m, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(p), err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ext4Label reads the volume label of an ext2/3/4 superblock. Hand-written:
// two fields at fixed offsets do not need a filesystem library in /init.
func ext4Label(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return ""
	}
	if sb[0x38] != 0x53 || sb[0x39] != 0xEF { // s_magic 0xEF53
		return ""
	}
	return string(bytes.TrimRight(sb[0x78:0x88], "\x00")) // s_volume_name
}

// waitForLabel waits for the block device holding an ext4 filesystem
// with the label (SD cards and USB disks appear late).
func waitForLabel(label string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		devs, _ := filepath.Glob("/sys/class/block/*")
		sort.Strings(devs)
		for _, d := range devs {
			dev := "/dev/" + filepath.Base(d)
			if ext4Label(dev) == label {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			names := make([]string, len(devs))
			for i, d := range devs {
				names[i] = filepath.Base(d)
			}
			return "", fmt.Errorf("no partition labelled %s after %s (block devices: %s); is the card flashed with a k3os image?",
				label, timeout, strings.Join(names, " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mountFS(src, dst, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return unix.Mount(src, dst, fstype, flags, data)
}

// waitForMAC returns the first wired (ethernet, not wireless) interface and
// its MAC, waiting for its driver; "" if there is none.
func waitForMAC(timeout time.Duration) (name, mac string) {
	deadline := time.Now().Add(timeout)
	for {
		if name, mac = wiredInterface("/sys/class/net"); mac != "" || time.Now().After(deadline) {
			return name, mac
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wiredInterface picks the first (by name) interface of a sysfs net
// directory that is ethernet (type 1), backed by a device and not wireless.
func wiredInterface(sysNet string) (name, mac string) {
	entries, _ := os.ReadDir(sysNet)
	for _, e := range entries {
		dir := filepath.Join(sysNet, e.Name())
		typ, _ := os.ReadFile(filepath.Join(dir, "type"))
		if strings.TrimSpace(string(typ)) != "1" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue // virtual: bridges, veth, bonds
		}
		if _, err := os.Stat(filepath.Join(dir, "wireless")); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "phy80211")); err == nil {
			continue
		}
		addr, _ := os.ReadFile(filepath.Join(dir, "address"))
		return e.Name(), strings.TrimSpace(string(addr))
	}
	return "", ""
}

// mountImage mounts a squashfs file read-only through a loop device.
func mountImage(file, dst string) error {
	backing, err := os.Open(file)
	if err != nil {
		return err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return fmt.Errorf("no free loop device: %w", err)
	}
	loopDev := fmt.Sprintf("/dev/loop%d", n)
	var loop *os.File
	for i := 0; i < 50; i++ { // devtmpfs creates the node asynchronously
		if loop, err = os.OpenFile(loopDev, os.O_RDONLY, 0); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer loop.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:], file)
	if err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg); err != nil {
		return fmt.Errorf("%s on %s: %w", file, loopDev, err)
	}
	return mountFS(loopDev, dst, "squashfs", unix.MS_RDONLY, "")
}

// runIn runs a shell command chrooted into root (init_cmd).
func runIn(root, command string, out io.Writer) error {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.SysProcAttr = &unix.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd.Run()
}

// switchRoot moves the kernel filesystems into root, frees the initramfs,
// makes root the / and execs its init.
func switchRoot(root, init string) error {
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		if err := unix.Mount(d, root+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s: %w", d, err)
		}
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	freeInitramfs(root)
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the new root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(init, []string{init}, os.Environ())
}

// freeInitramfs deletes the initramfs's files (it lives in RAM), keeping
// the mount points of other filesystems, as switch_root(8) does.
func freeInitramfs(keep string) {
	var st unix.Stat_t
	if unix.Stat("/", &st) != nil {
		return
	}
	rootDev := st.Dev
	var walk func(dir string)
	walk = func(dir string) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if p == keep {
				continue
			}
			var s unix.Stat_t
			if unix.Lstat(p, &s) != nil || s.Dev != rootDev {
				continue
			}
			if e.IsDir() {
				walk(p)
				unix.Rmdir(p)
			} else {
				unix.Unlink(p)
			}
		}
	}
	walk("/")
}
