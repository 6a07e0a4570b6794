package flash

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// fakeSystem is a machine with two disks: sda (internal, the system's
// when mountinfo says so) and sdb (a removable card with two partitions).
// Device nodes are files under dev/ whose content is their number; a
// symlink there is followed, as stat follows it.
func fakeSystem(t *testing.T, mountinfo, swaps string) (System, string) {
	t.Helper()
	dir := t.TempDir()
	devices := filepath.Join(dir, "sys", "devices")
	byNum := filepath.Join(dir, "sys", "dev", "block")
	os.MkdirAll(byNum, 0o755)
	disk := func(name, num, model, removable string, parts ...string) {
		d := filepath.Join(devices, name)
		os.MkdirAll(filepath.Join(d, "device"), 0o755)
		os.WriteFile(filepath.Join(d, "dev"), []byte(num+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "size"), []byte("62333952\n"), 0o644)
		os.WriteFile(filepath.Join(d, "removable"), []byte(removable+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "device", "model"), []byte(model+"\n"), 0o644)
		os.Symlink(d, filepath.Join(byNum, num))
		for i, p := range parts {
			pd := filepath.Join(d, name+fmt.Sprint(i+1))
			os.MkdirAll(pd, 0o755)
			os.WriteFile(filepath.Join(pd, "dev"), []byte(p+"\n"), 0o644)
			os.WriteFile(filepath.Join(pd, "partition"), []byte(fmt.Sprint(i+1)+"\n"), 0o644)
			os.Symlink(pd, filepath.Join(byNum, p))
		}
	}
	disk("sda", "8:0", "Internal SSD", "0", "8:1")
	disk("sdb", "8:16", "Card Reader", "1", "8:17", "8:18")
	dev := filepath.Join(dir, "dev")
	os.MkdirAll(filepath.Join(dev, "disk", "by-id"), 0o755)
	for name, num := range map[string]string{"sda": "8:0", "sda1": "8:1", "sdb": "8:16", "sdb1": "8:17", "sdb2": "8:18"} {
		os.WriteFile(filepath.Join(dev, name), []byte(num), 0o644)
	}
	// Named like the card, pointing at the system disk.
	os.Symlink("../../sda", filepath.Join(dev, "disk", "by-id", "usb-sdb"))
	os.WriteFile(filepath.Join(dir, "mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(dir, "swaps"), []byte("Filename Type Size Used Priority\n"+swaps), 0o644)
	sys := System{MountInfo: filepath.Join(dir, "mountinfo"), Swaps: filepath.Join(dir, "swaps"), SysDevBlock: byNum,
		DevNum: func(p string) (string, error) {
			if !filepath.IsAbs(p) || strings.HasPrefix(p, "/dev/") {
				p = filepath.Join(dev, strings.TrimPrefix(p, "/dev/"))
			}
			b, err := os.ReadFile(p) // follows the symlink
			return string(b), err
		}}
	return sys, dev
}

func TestCheck(t *testing.T) {
	root := "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
	for _, tc := range []struct {
		name, mountinfo, swaps, device string
		internal                       bool
		want                           string
	}{
		{"free card", root, "", "sdb", false, ""},
		{"mounted", root + "40 22 8:18 / /media/card rw - ext4 /dev/sdb2 rw\n", "", "sdb", false, "sdb2 is mounted at /media/card"},
		{"system disk", root, "", "sda", true, "holds the running system"},
		{"swap", root, "/dev/sdb2 partition 1024 0 -2\n", "sdb", false, "in use as swap"},
		{"partition", root, "", "sdb1", false, "is the partition sdb1"},
		// A symlink named like the card is checked as the disk it is.
		{"symlink to the system disk", root, "", "disk/by-id/usb-sdb", true, "(the disk sda) holds the running system"},
		{"internal disk", "22 1 8:99 / / rw - ext4 /dev/vda1 rw\n", "", "sda", false, "not a removable disk; if it really is the card, say so with FLASH_INTERNAL=1"},
		{"internal disk, told", "22 1 8:99 / / rw - ext4 /dev/vda1 rw\n", "", "sda", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys, dev := fakeSystem(t, tc.mountinfo, tc.swaps)
			d, err := sys.Find(filepath.Join(dev, tc.device))
			if err == nil {
				err = sys.Check(d, tc.internal)
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%s: %v, want %q", tc.device, err, tc.want)
			}
		})
	}
	sys, dev := fakeSystem(t, root, "")
	d, err := sys.Find(filepath.Join(dev, "sdb"))
	if err != nil || !strings.Contains(d.String(), "Card Reader, 29.7 GiB, removable") {
		t.Errorf("the disk is shown as %q (%v)", d, err)
	}
}

func TestWriteAndVerify(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	data := bytes.Repeat([]byte("k3os"), 1<<18)
	os.WriteFile(img, data, 0o644)
	var zst bytes.Buffer
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(data)
	zw.Close()
	os.WriteFile(img+".zst", zst.Bytes(), 0o644)
	for _, src := range []string{img, img + ".zst"} {
		card := filepath.Join(dir, "card")
		os.WriteFile(card, nil, 0o644)
		var progress bytes.Buffer
		if err := Write(src, card, Host, false, &progress); err != nil {
			t.Fatalf("Write(%s): %v", filepath.Base(src), err)
		}
		got, _ := os.ReadFile(card)
		if !bytes.Equal(got, data) || !strings.Contains(progress.String(), "written and verified") {
			t.Errorf("Write(%s): card holds %d bytes, progress %q", filepath.Base(src), len(got), progress.String())
		}
	}
}

// The read-back goes through O_DIRECT in aligned blocks when it can.
func TestDirectReader(t *testing.T) {
	f := filepath.Join(t.TempDir(), "blob")
	data := bytes.Repeat([]byte("0123456789"), 300000)
	os.WriteFile(f, data, 0o644)
	h, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(&directReader{f: h, left: int64(len(data) - 7)}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data[:len(data)-7]) {
		t.Errorf("read %d bytes, want %d", got.Len(), len(data)-7)
	}
	if b := alignedBlock(1 << 20); len(b) != 1<<20 {
		t.Errorf("aligned block of %d", len(b))
	}
}
