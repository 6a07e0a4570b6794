package boot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GrowPlan says whether a partition can grow: it does when it is the last
// on its disk and at least 1 MiB of the disk lies after it.
type GrowPlan struct {
	Disk, Part string // e.g. /dev/mmcblk0, /dev/mmcblk0p2
	Number     int
	Grow       bool
	FreeMiB    int64
}

// PlanGrow reads sysfs (sysBlock is /sys/class/block) for dev.
func PlanGrow(sysBlock, dev string) (GrowPlan, error) {
	name := filepath.Base(dev)
	link, err := filepath.EvalSymlinks(filepath.Join(sysBlock, name))
	if err != nil {
		return GrowPlan{}, err
	}
	disk := filepath.Base(filepath.Dir(link))
	p := GrowPlan{Disk: "/dev/" + disk, Part: "/dev/" + name}
	read := func(path string) int64 {
		b, _ := os.ReadFile(path)
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	p.Number = int(read(filepath.Join(link, "partition")))
	if p.Number == 0 {
		return p, fmt.Errorf("%s is not a partition", dev)
	}
	end := read(filepath.Join(link, "start")) + read(filepath.Join(link, "size"))
	diskSize := read(filepath.Join(filepath.Dir(link), "size"))
	// Another partition after this one: leave the disk alone.
	siblings, _ := filepath.Glob(filepath.Join(filepath.Dir(link), disk+"*"))
	for _, s := range siblings {
		if s != link && read(filepath.Join(s, "start")) >= end {
			return p, nil
		}
	}
	p.FreeMiB = (diskSize - end) * 512 >> 20
	p.Grow = p.FreeMiB >= 1
	return p, nil
}

// Grow extends the state partition and its ext4 filesystem, mounted at
// mnt, to the end of the disk, as the first boot of a freshly flashed card
// does.
func Grow(ctx context.Context, dev, mnt string) (GrowPlan, error) {
	p, err := PlanGrow("/sys/class/block", dev)
	if err != nil || !p.Grow {
		return p, err
	}
	steps := []struct {
		stdin string
		argv  []string
	}{
		{",+\n", []string{"sfdisk", "--no-reread", "--no-tell-kernel", "-q", "-N", strconv.Itoa(p.Number), p.Disk}},
		{"", []string{"partx", "-u", "--nr", strconv.Itoa(p.Number), p.Disk}},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
		cmd.Stdin = strings.NewReader(s.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return p, fmt.Errorf("%s: %v: %s", strings.Join(s.argv, " "), err, strings.TrimSpace(string(out)))
		}
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	if err != nil {
		return p, err
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return p, err
	}
	return p, resizeFS(mnt, sectors*512)
}

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4IocResizeFS = 0x40086610

// resizeFS grows the mounted ext4 filesystem at mnt to size bytes, with the
// ioctl that resize2fs uses on a mounted filesystem. Called directly: some
// resize2fs builds take a filesystem that is mounted only through a moved
// mount for an unmounted one and then cannot open it exclusively.
func resizeFS(mnt string, size int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return err
	}
	blocks := uint64(size) / uint64(st.Bsize)
	f, err := os.Open(mnt)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("resizing the filesystem at %s to %d blocks: %w", mnt, blocks, errno)
	}
	return nil
}
