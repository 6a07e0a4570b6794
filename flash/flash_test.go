package flash

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func fakeSystem(t *testing.T, mountinfo, swaps string) System {
	t.Helper()
	dir := t.TempDir()
	block := filepath.Join(dir, "block")
	mk := func(p, dev string) {
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "dev"), []byte(dev+"\n"), 0o644)
	}
	mk(filepath.Join(block, "sdb"), "8:16")
	mk(filepath.Join(block, "sdb", "sdb1"), "8:17")
	mk(filepath.Join(block, "sdb", "sdb2"), "8:18")
	os.WriteFile(filepath.Join(block, "sdb", "sdb1", "partition"), []byte("1\n"), 0o644)
	// /sys/class/block lists partitions at the top level too.
	os.Symlink(filepath.Join(block, "sdb", "sdb1"), filepath.Join(block, "sdb1"))
	os.WriteFile(filepath.Join(dir, "mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(dir, "swaps"), []byte("Filename Type Size Used Priority\n"+swaps), 0o644)
	return System{MountInfo: filepath.Join(dir, "mountinfo"), Swaps: filepath.Join(dir, "swaps"), SysBlock: block}
}

func TestCheck(t *testing.T) {
	root := "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
	for _, tc := range []struct {
		name, mountinfo, swaps, device, want string
	}{
		{"free card", root, "", "/dev/sdb", ""},
		{"mounted", root + "40 22 8:18 / /media/card rw - ext4 /dev/sdb2 rw\n", "", "/dev/sdb", "sdb2 is mounted at /media/card"},
		{"system disk", "22 1 8:17 / / rw - ext4 /dev/sdb1 rw\n", "", "/dev/sdb", "holds the running system"},
		{"swap", root, "/dev/sdb2 partition 1024 0 -2\n", "/dev/sdb", "in use as swap"},
		{"partition", root, "", "/dev/sdb1", "is a partition"},
		{"unknown", root, "", "/dev/sdz", "not a disk this machine knows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fakeSystem(t, tc.mountinfo, tc.swaps).Check(tc.device)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check(%s) = %v, want %q", tc.device, err, tc.want)
			}
		})
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
		if err := Write(src, card, Host, &progress); err != nil {
			t.Fatalf("Write(%s): %v", filepath.Base(src), err)
		}
		got, _ := os.ReadFile(card)
		if !bytes.Equal(got, data) || !strings.Contains(progress.String(), "written and verified") {
			t.Errorf("Write(%s): card holds %d bytes, progress %q", filepath.Base(src), len(got), progress.String())
		}
	}
}
