package boot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// Grow extends the state partition and its (mounted) ext4 filesystem to
// the end of the disk, as the first boot of a freshly flashed card does.
func Grow(ctx context.Context, dev string) (GrowPlan, error) {
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
		{"", []string{"resize2fs", p.Part}},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
		cmd.Stdin = strings.NewReader(s.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return p, fmt.Errorf("%s: %v: %s", strings.Join(s.argv, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return p, nil
}
