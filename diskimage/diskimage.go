// Package diskimage reads a built SD-card image with go-diskfs: its
// partition table, the files of the FAT32 boot partition and the node
// configs and versions on the ext4 state partition. It backs `mage
// inspect` and the boot test, which boots the kernel, initramfs and command
// line the image itself carries.
package diskimage

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// Partition is one MBR entry.
type Partition struct {
	Number      int
	Type        byte
	Bootable    bool
	StartSector uint32
	Sectors     uint32
}

// Info is what an image holds.
type Info struct {
	Path       string
	Size       int64
	Partitions []Partition
	BootFiles  map[string]int64 // name -> size
	Cmdline    string
	// Nodes are the config files on the state partition (MAC or default).
	Nodes []string
	// Current is the active system version; Release its k3os-release.
	Current string
	Release map[string]string
}

// Open opens an image read-only.
func Open(p string) (*disk.Disk, error) {
	return diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
}

// Inspect reads an image's layout and contents.
func Inspect(p string) (*Info, error) {
	d, err := Open(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	info := &Info{Path: p, Size: d.Size, BootFiles: map[string]int64{}, Release: map[string]string{}}
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("%s: no partition table: %w", p, err)
	}
	t, ok := pt.(*mbr.Table)
	if !ok {
		return nil, fmt.Errorf("%s: a %s partition table; k3OS Pi images use MBR", p, pt.Type())
	}
	for i, part := range t.Partitions {
		if part == nil || part.Size == 0 {
			continue
		}
		info.Partitions = append(info.Partitions, Partition{Number: i + 1, Type: byte(part.Type), Bootable: part.Bootable,
			StartSector: part.Start, Sectors: part.Size})
	}
	boot, err := d.GetFilesystem(layout.BootPartition)
	if err != nil {
		return nil, fmt.Errorf("%s: boot partition: %w", p, err)
	}
	entries, err := boot.ReadDir(".")
	if err != nil {
		return nil, fmt.Errorf("%s: reading the boot partition: %w", p, err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && !e.IsDir() {
			info.BootFiles[e.Name()] = fi.Size()
		}
	}
	if b, err := readAll(boot, "cmdline.txt"); err == nil {
		info.Cmdline = strings.TrimSpace(string(b))
	}
	state, err := d.GetFilesystem(layout.StatePartition)
	if err != nil {
		return nil, fmt.Errorf("%s: state partition: %w", p, err)
	}
	if entries, err := state.ReadDir(layout.ConfigDir); err == nil {
		for _, e := range entries {
			info.Nodes = append(info.Nodes, strings.TrimSuffix(e.Name(), path.Ext(e.Name())))
		}
		sort.Strings(info.Nodes)
	}
	if entries, err := state.ReadDir(layout.SystemDir); err == nil {
		// go-diskfs reports the current link as a file; the version
		// directory next to it is the one that is named in it.
		for _, e := range entries {
			if e.IsDir() {
				info.Current = e.Name()
			}
		}
	}
	if b, err := readAll(state, layout.SystemDir+"/"+info.Current+"/k3os-release"); err == nil {
		info.Release = ParseRelease(b)
	}
	return info, nil
}

// ParseRelease reads the KEY=VALUE lines of an image's k3os-release.
func ParseRelease(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			// os-release style: a value may be in double quotes.
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			m[k] = v
		}
	}
	return m
}

type readFS interface {
	Open(name string) (fs.File, error)
}

func readAll(f readFS, name string) ([]byte, error) {
	h, err := f.Open(name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return io.ReadAll(h)
}

// ExtractBootFiles copies files of the boot partition into dir.
func ExtractBootFiles(p, dir string, names ...string) error {
	d, err := Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	boot, err := d.GetFilesystem(layout.BootPartition)
	if err != nil {
		return fmt.Errorf("%s: boot partition: %w", p, err)
	}
	for _, n := range names {
		b, err := readAll(boot, n)
		if err != nil {
			return fmt.Errorf("%s: boot partition has no %s: %w", p, n, err)
		}
		if err := os.WriteFile(path.Join(dir, n), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Render prints an Info for people.
func (i *Info) Render(w io.Writer) {
	fmt.Fprintf(w, "%s: %d MiB\n", i.Path, i.Size>>20)
	fmt.Fprintln(w, "partitions:")
	for _, p := range i.Partitions {
		boot := ""
		if p.Bootable {
			boot = " bootable"
		}
		fmt.Fprintf(w, "  %d  type 0x%02x  start %d MiB  size %d MiB%s\n", p.Number, p.Type, p.StartSector/2048, p.Sectors/2048, boot)
	}
	fmt.Fprintln(w, "boot files:")
	for _, n := range slices.Sorted(maps.Keys(i.BootFiles)) {
		fmt.Fprintf(w, "  %-24s %10d\n", n, i.BootFiles[n])
	}
	fmt.Fprintf(w, "cmdline: %s\n", i.Cmdline)
	fmt.Fprintf(w, "system: %s (%s, k3s: %s)\n", i.Current, i.Release["VERSION"], i.Release["K3S"])
	fmt.Fprintf(w, "node configs: %s\n", strings.Join(i.Nodes, " "))
}
