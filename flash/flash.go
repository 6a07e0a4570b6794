// Package flash writes an image to an SD card: it finds the disk by the
// device number of the node it is given (a symlink named like a safe disk
// cannot point elsewhere), refuses a disk that is mounted, holds the
// running system or swap, is not removable (unless told), or is too small;
// says which disk it writes; writes with progress; and verifies by reading
// the card back past the page cache.
package flash

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// System describes the machine, for the safety checks (tests fake it).
type System struct {
	MountInfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
	// SysDevBlock is /sys/dev/block: every block device by its number.
	SysDevBlock string
	// DevNum returns the "major:minor" of a device node (following
	// symlinks), or an error when it is no block device.
	DevNum func(path string) (string, error)
}

// Host is the running machine.
var Host = System{MountInfo: "/proc/self/mountinfo", Swaps: "/proc/swaps", SysDevBlock: "/sys/dev/block", DevNum: devNum}

func devNum(p string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", p)
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))), nil
}

// Disk is the disk a device node stands for.
type Disk struct {
	Path, DevNum, Name string
	Model              string
	Size               int64
	Removable          bool
	// Parts are the disk's device numbers and its partitions', by name.
	Parts map[string]string
}

func (d Disk) String() string {
	kind := "removable"
	if !d.Removable {
		kind = "NOT removable"
	}
	model := d.Model
	if model == "" {
		model = "(no model)"
	}
	return fmt.Sprintf("%s (%s, %s): %s, %.1f GiB, %s", d.Path, d.Name, d.DevNum, model, float64(d.Size)/(1<<30), kind)
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// Find resolves a device node to its disk, by its device number.
func (s System) Find(device string) (Disk, error) {
	num, err := s.DevNum(device)
	if err != nil {
		return Disk{}, err
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(s.SysDevBlock, num))
	if err != nil {
		return Disk{}, fmt.Errorf("%s (%s) is not a disk this machine knows: %w", device, num, err)
	}
	d := Disk{Path: device, DevNum: num, Name: filepath.Base(dir), Parts: map[string]string{num: filepath.Base(dir)}}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		return d, fmt.Errorf("%s is the partition %s: give the whole card (e.g. /dev/sdb, /dev/mmcblk0)", device, d.Name)
	}
	sectors, _ := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
	d.Size = sectors * 512
	d.Model = strings.TrimSpace(readTrim(filepath.Join(dir, "device", "vendor")) + " " + readTrim(filepath.Join(dir, "device", "model")))
	if d.Model == "" {
		d.Model = readTrim(filepath.Join(dir, "device", "name")) // an SD card's own name
	}
	// A USB reader says removable; an SD slot's cards (mmc type SD) do
	// not, but are; eMMC (type MMC) is the machine's own.
	d.Removable = readTrim(filepath.Join(dir, "removable")) == "1" || readTrim(filepath.Join(dir, "device", "type")) == "SD"
	parts, _ := filepath.Glob(filepath.Join(dir, d.Name+"*"))
	for _, p := range parts {
		if n := readTrim(filepath.Join(p, "dev")); n != "" {
			d.Parts[n] = filepath.Base(p)
		}
	}
	return d, nil
}

// Check refuses a disk that must not be written: one that is mounted, holds
// the running system or swap, or is not removable (unless internal).
func (s System) Check(d Disk, internal bool) error {
	mi, err := os.ReadFile(s.MountInfo)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if part, ok := d.Parts[f[2]]; ok {
			if f[4] == "/" {
				return fmt.Errorf("%s (the disk %s) holds the running system (/ is on %s): refusing", d.Path, d.Name, part)
			}
			return fmt.Errorf("%s is mounted at %s: unmount it first (umount /dev/%s)", part, f[4], part)
		}
	}
	swaps, _ := os.ReadFile(s.Swaps)
	for _, line := range strings.Split(string(swaps), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			if n, err := s.DevNum(f[0]); err == nil && d.Parts[n] != "" {
				return fmt.Errorf("%s is in use as swap: refusing", f[0])
			}
		}
	}
	if !d.Removable && !internal {
		return fmt.Errorf("%s: not a removable disk; if it really is the card, say so with FLASH_INTERNAL=1", d)
	}
	return nil
}

// open returns the image's content (decompressing .zst) and its size.
func open(image string) (io.ReadCloser, int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, 0, err
	}
	if !strings.HasSuffix(image, ".zst") {
		fi, err := f.Stat()
		return f, fi.Size(), err
	}
	zr, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	// The size of a compressed image is known only once read.
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	f.Seek(0, io.SeekStart)
	zr.Reset(f)
	return struct {
		io.Reader
		io.Closer
	}{zr.IOReadCloser(), f}, n, nil
}

// Write writes image (.img or .img.zst) to device and reads it back.
// progress receives what disk it writes and a line now and then. internal
// lets it write a disk that is not removable.
func Write(image, device string, sys System, internal bool, progress io.Writer) error {
	fi, err := os.Stat(device)
	if err != nil {
		return err
	}
	var disk Disk
	isDev := fi.Mode()&os.ModeDevice != 0
	if isDev {
		if disk, err = sys.Find(device); err != nil {
			return err
		}
		if err := sys.Check(disk, internal); err != nil {
			return err
		}
	}
	src, size, err := open(image)
	if err != nil {
		return err
	}
	defer src.Close()
	dev, err := os.OpenFile(device, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w (is it in use?)", device, err)
	}
	defer dev.Close()
	if isDev {
		// What was opened is what was checked, whatever the path does now.
		var st unix.Stat_t
		if err := unix.Fstat(int(dev.Fd()), &st); err != nil {
			return err
		}
		if got := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))); got != disk.DevNum {
			return fmt.Errorf("%s changed from %s to %s while it was checked: refusing", device, disk.DevNum, got)
		}
		if disk.Size < size {
			return fmt.Errorf("%s holds %d MiB, the image needs %d MiB", disk, disk.Size>>20, size>>20)
		}
		fmt.Fprintf(progress, "writing %s to %s\n", filepath.Base(image), disk)
	}
	h := sha256.New()
	pw := &progressWriter{w: progress, total: size, what: "writing", last: time.Now()}
	if _, err := io.Copy(io.MultiWriter(dev, h, pw), src); err != nil {
		return fmt.Errorf("writing %s: %w", device, err)
	}
	if err := dev.Sync(); err != nil {
		return err
	}
	if err := verify(dev, device, size, h.Sum(nil), progress); err != nil {
		return err
	}
	fmt.Fprintf(progress, "\r%s: %d MiB written and verified\n", device, size>>20)
	return nil
}

// verify reads the card back: past the page cache (the kernel's copy of
// what was written proves nothing about the card), through O_DIRECT with
// aligned reads where the device takes them.
func verify(dev *os.File, device string, size int64, want []byte, progress io.Writer) error {
	// Drop what the kernel cached of the device.
	unix.Fadvise(int(dev.Fd()), 0, 0, unix.FADV_DONTNEED)
	unix.IoctlSetInt(int(dev.Fd()), unix.BLKFLSBUF, 0)
	r := io.Reader(io.NewSectionReader(dev, 0, size))
	if direct, err := os.OpenFile(device, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
		defer direct.Close()
		r = &directReader{f: direct, left: size}
	}
	h := sha256.New()
	pr := &progressWriter{w: progress, total: size, what: "verifying", last: time.Now()}
	if _, err := io.Copy(io.MultiWriter(h, pr), r); err != nil {
		return fmt.Errorf("reading %s back: %w", device, err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return errors.New("verification failed: the card does not read back what was written (a bad or fake card?)")
	}
	return nil
}

// directReader reads an O_DIRECT file in aligned 1 MiB blocks, up to left
// bytes.
type directReader struct {
	f    *os.File
	left int64
	buf  []byte
	off  int
}

func (d *directReader) Read(p []byte) (int, error) {
	if d.off == len(d.buf) {
		if d.left <= 0 {
			return 0, io.EOF
		}
		if d.buf == nil {
			d.buf = alignedBlock(1 << 20)
		}
		n, err := d.f.Read(d.buf[:cap(d.buf)])
		if n == 0 && err != nil {
			return 0, err
		}
		if int64(n) > d.left {
			n = int(d.left)
		}
		d.left -= int64(n)
		d.buf, d.off = d.buf[:n], 0
	}
	n := copy(p, d.buf[d.off:])
	d.off += n
	return n, nil
}

// alignedBlock is a buffer aligned to 4096 bytes, as O_DIRECT wants.
func alignedBlock(size int) []byte {
	b := make([]byte, size+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	if off == 4096 {
		off = 0
	}
	return b[off : off+size]
}

type progressWriter struct {
	w     io.Writer
	total int64
	done  int64
	what  string
	last  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if time.Since(p.last) > time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r%s %d/%d MiB (%d%%)", p.what, p.done>>20, p.total>>20, p.done*100/max(p.total, 1))
	}
	return len(b), nil
}
