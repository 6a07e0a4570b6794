// Package flash writes an image to an SD card: it refuses a disk that is
// mounted, holds the running system or swap, or is too small; writes with
// progress; and verifies by reading the card back.
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
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// System describes the machine, for the safety checks (tests fake it).
type System struct {
	MountInfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
	SysBlock  string // /sys/class/block
}

// Host is the running machine.
var Host = System{MountInfo: "/proc/self/mountinfo", Swaps: "/proc/swaps", SysBlock: "/sys/class/block"}

// devNumbers returns "major:minor" of a disk and of each of its partitions.
func (s System) devNumbers(disk string) (map[string]string, error) {
	name := filepath.Base(disk)
	out := map[string]string{}
	read := func(dir, n string) error {
		b, err := os.ReadFile(filepath.Join(dir, "dev"))
		if err != nil {
			return err
		}
		out[strings.TrimSpace(string(b))] = n
		return nil
	}
	dir := filepath.Join(s.SysBlock, name)
	if err := read(dir, name); err != nil {
		return nil, fmt.Errorf("%s is not a disk this machine knows: %w", disk, err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, name+"*"))
	for _, p := range parts {
		read(p, filepath.Base(p))
	}
	return out, nil
}

// Check refuses a device that must not be written: a partition rather than
// a whole disk, a mounted disk, the system disk, a swap disk.
func (s System) Check(device string) error {
	if _, err := os.Stat(filepath.Join(s.SysBlock, filepath.Base(device), "partition")); err == nil {
		return fmt.Errorf("%s is a partition: give the whole card (e.g. /dev/sdb, /dev/mmcblk0)", device)
	}
	devs, err := s.devNumbers(device)
	if err != nil {
		return err
	}
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
		if part, ok := devs[f[2]]; ok {
			if f[4] == "/" {
				return fmt.Errorf("%s holds the running system (/ is on %s): refusing", device, part)
			}
			return fmt.Errorf("%s is mounted at %s: unmount it first (umount /dev/%s)", part, f[4], part)
		}
	}
	swaps, _ := os.ReadFile(s.Swaps)
	for _, line := range strings.Split(string(swaps), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 0 {
			for _, part := range devs {
				if filepath.Base(f[0]) == part {
					return fmt.Errorf("%s is in use as swap: refusing", f[0])
				}
			}
		}
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

func deviceSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return -1, nil // a file (tests): no size limit
	}
	n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	return int64(n), err
}

// Write writes image (.img or .img.zst) to device and reads it back.
// progress receives a line now and then.
func Write(image, device string, sys System, progress io.Writer) error {
	if fi, err := os.Stat(device); err == nil && fi.Mode()&os.ModeDevice != 0 {
		if err := sys.Check(device); err != nil {
			return err
		}
	} else if err != nil {
		return err
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
	if cap, err := deviceSize(dev); err != nil {
		return err
	} else if cap >= 0 && cap < size {
		return fmt.Errorf("%s holds %d MiB, the image needs %d MiB", device, cap>>20, size>>20)
	}
	h := sha256.New()
	pw := &progressWriter{w: progress, total: size, what: "writing", last: time.Now()}
	if _, err := io.Copy(io.MultiWriter(dev, h, pw), src); err != nil {
		return fmt.Errorf("writing %s: %w", device, err)
	}
	if err := dev.Sync(); err != nil {
		return err
	}
	want := h.Sum(nil)
	if _, err := dev.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h.Reset()
	pr := &progressWriter{w: progress, total: size, what: "verifying", last: time.Now()}
	if _, err := io.Copy(io.MultiWriter(h, pr), io.LimitReader(dev, size)); err != nil {
		return fmt.Errorf("reading %s back: %w", device, err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return errors.New("verification failed: the card does not read back what was written (a bad or fake card?)")
	}
	fmt.Fprintf(progress, "\r%s: %d MiB written and verified\n", device, size>>20)
	return nil
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
