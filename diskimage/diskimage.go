// Package diskimage reads a built SD-card image (or a card, or a test
// machine's disk) with go-diskfs: its partition table, autoboot.txt, each
// boot slot's files and the version it names, and the node configs and
// versions on the ext4 state partition. It backs `mage inspect` and the
// boot test, which boots what the card's slots hold, as the Pi firmware
// would.
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
	"github.com/diskfs/go-diskfs/filesystem"
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

// Slot is what a boot slot holds.
type Slot struct {
	// Files are the slot's files by name, with their sizes.
	Files   map[string]int64
	Cmdline string
	// Version and Config are what its cmdline.txt names ("" in an empty slot).
	Version, Config string
}

// Info is what an image holds.
type Info struct {
	Path       string
	Size       int64
	Partitions []Partition
	// Autoboot is autoboot.txt; Boot the slot the firmware boots, Try the
	// one a try-once boot tries.
	Autoboot  string
	Boot, Try int
	Slots     map[int]Slot
	// Nodes are the config files the card was built with (MAC or
	// default), until its first boot keeps its own.
	Nodes []string
	// NodeConfigs are the node's own configs (ids), once it booted.
	NodeConfigs []string
	// Versions are the system versions on the state partition; Release
	// the booted slot's version's k3os-release.
	Versions []string
	Release  map[string]string
	// Trust are the public keys upgrades must be signed with.
	Trust []string
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
	info := &Info{Path: p, Size: d.Size, Slots: map[int]Slot{}, Release: map[string]string{}}
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
	ab, err := d.GetFilesystem(layout.AutobootPartition)
	if err != nil {
		return nil, fmt.Errorf("%s: the autoboot partition: %w (an image of the old layout? rebuild it)", p, err)
	}
	b, err := readAll(ab, layout.AutobootFile)
	if err != nil {
		return nil, fmt.Errorf("%s: no %s: %w", p, layout.AutobootFile, err)
	}
	info.Autoboot = string(b)
	info.Boot, info.Try = layout.ParseAutoboot(info.Autoboot)
	for _, n := range []int{layout.BootA, layout.BootB} {
		s, err := readSlot(d, n)
		if err != nil {
			return nil, fmt.Errorf("%s: boot slot %d: %w", p, n, err)
		}
		info.Slots[n] = s
	}
	state, err := d.GetFilesystem(layout.StatePartition)
	if err != nil {
		return nil, fmt.Errorf("%s: state partition: %w", p, err)
	}
	info.Nodes = names(state, layout.ConfigDir, true)
	info.NodeConfigs = names(state, layout.NodeConfigDir, true)
	info.Trust = names(state, layout.TrustDir, false)
	if entries, err := state.ReadDir(layout.SystemDir); err == nil {
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				info.Versions = append(info.Versions, e.Name())
			}
		}
		sort.Strings(info.Versions)
	}
	if v := info.Slots[info.Boot].Version; v != "" {
		if b, err := readAll(state, layout.SystemDir+"/"+v+"/k3os-release"); err == nil {
			info.Release = ParseRelease(b)
		}
	}
	return info, nil
}

func names(fsys filesystem.FileSystem, dir string, trimExt bool) []string {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		if trimExt {
			n = strings.TrimSuffix(n, path.Ext(n))
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func readSlot(d *disk.Disk, n int) (Slot, error) {
	s := Slot{Files: map[string]int64{}}
	fsys, err := d.GetFilesystem(n)
	if err != nil {
		return s, err
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		return s, err
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && !e.IsDir() {
			s.Files[e.Name()] = fi.Size()
		}
	}
	if b, err := readAll(fsys, "cmdline.txt"); err == nil {
		s.Cmdline = strings.TrimSpace(string(b))
		s.Version, s.Config = CmdlineParam(s.Cmdline, layout.SystemParam), CmdlineParam(s.Cmdline, layout.ConfigParam)
	}
	return s, nil
}

// CmdlineParam returns the value of a kernel command line parameter.
func CmdlineParam(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
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

// ReadBootFile returns a file of a partition (an autoboot or boot slot).
func ReadBootFile(p string, partition int, name string) ([]byte, error) {
	d, err := Open(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fsys, err := d.GetFilesystem(partition)
	if err != nil {
		return nil, fmt.Errorf("%s: partition %d: %w", p, partition, err)
	}
	b, err := readAll(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("%s: partition %d has no %s: %w", p, partition, name, err)
	}
	return b, nil
}

// ExtractBootFiles copies files of a boot slot into dir.
func ExtractBootFiles(p string, slot int, dir string, names ...string) error {
	for _, n := range names {
		b, err := ReadBootFile(p, slot, n)
		if err != nil {
			return err
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
	fmt.Fprintf(w, "autoboot: boots slot %d, tries slot %d\n", i.Boot, i.Try)
	for _, n := range slices.Sorted(maps.Keys(i.Slots)) {
		s := i.Slots[n]
		what := "empty"
		if s.Version != "" {
			what = "system " + s.Version + ", config " + s.Config
		}
		fmt.Fprintf(w, "slot %d: %s\n", n, what)
		for _, f := range slices.Sorted(maps.Keys(s.Files)) {
			fmt.Fprintf(w, "    %-24s %10d\n", f, s.Files[f])
		}
		if s.Cmdline != "" {
			fmt.Fprintf(w, "    cmdline: %s\n", s.Cmdline)
		}
	}
	fmt.Fprintf(w, "versions on the state partition: %s (booted: %s, k3s: %s)\n", strings.Join(i.Versions, " "), i.Release["VERSION"], i.Release["K3S"])
	fmt.Fprintf(w, "node configs of the card: %s\n", strings.Join(i.Nodes, " "))
	if len(i.NodeConfigs) > 0 {
		fmt.Fprintf(w, "the node's own configs: %s\n", strings.Join(i.NodeConfigs, " "))
	}
	fmt.Fprintf(w, "upgrade keys trusted: %s\n", strings.Join(i.Trust, " "))
}
