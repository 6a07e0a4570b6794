package boot

import (
	"github.com/k3os-rpi/k3os-rpi4/layout"

	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestExt4Label(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 (e2fsprogs) not installed")
	}
	img := filepath.Join(t.TempDir(), "state.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-L", layout.StateLabel, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if got := ext4Label(img); got != layout.StateLabel {
		t.Errorf("ext4Label = %q, want %q", got, layout.StateLabel)
	}
	os.WriteFile(img, make([]byte, 4096), 0o644)
	if got := ext4Label(img); got != "" {
		t.Errorf("ext4Label(zeros) = %q, want empty", got)
	}
}

func TestWiredInterface(t *testing.T) {
	sys := t.TempDir()
	nic := func(name, typ, mac string, device bool, extra ...string) {
		d := filepath.Join(sys, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "address"), []byte(mac+"\n"), 0o644)
		if device {
			os.Mkdir(filepath.Join(d, "device"), 0o755)
		}
		for _, e := range extra {
			os.Mkdir(filepath.Join(d, e), 0o755)
		}
	}
	nic("lo", "772", "00:00:00:00:00:00", false)
	nic("cni0", "1", "aa:aa:aa:aa:aa:aa", false)
	nic("eth0", "1", "dc:a6:32:01:02:03", true)
	nic("aaa-wlan", "1", "b8:27:eb:00:00:01", true, "wireless")
	name, mac := wiredInterface(sys)
	if name != "eth0" || mac != "dc:a6:32:01:02:03" {
		t.Errorf("wiredInterface = %s %s, want eth0 dc:a6:32:01:02:03", name, mac)
	}
	if name, mac := wiredInterface(t.TempDir()); name != "" || mac != "" {
		t.Errorf("no interfaces: got %s %s", name, mac)
	}
}

func TestPlanGrow(t *testing.T) {
	sys := t.TempDir()
	devs := filepath.Join(sys, "devices", "mmcblk0")
	write := func(p, v string) { os.MkdirAll(filepath.Dir(p), 0o755); os.WriteFile(p, []byte(v+"\n"), 0o644) }
	write(filepath.Join(devs, "size"), "62333952") // a 32 GB card
	write(filepath.Join(devs, "mmcblk0p1", "partition"), "1")
	write(filepath.Join(devs, "mmcblk0p1", "start"), "8192")
	write(filepath.Join(devs, "mmcblk0p1", "size"), "524288")
	write(filepath.Join(devs, "mmcblk0p2", "partition"), "2")
	write(filepath.Join(devs, "mmcblk0p2", "start"), "532480")
	write(filepath.Join(devs, "mmcblk0p2", "size"), "1048576")
	block := filepath.Join(sys, "class", "block")
	os.MkdirAll(block, 0o755)
	for _, p := range []string{"mmcblk0p1", "mmcblk0p2"} {
		os.Symlink(filepath.Join(devs, p), filepath.Join(block, p))
	}
	p, err := PlanGrow(block, "/dev/mmcblk0p2")
	if err != nil || !p.Grow || p.Disk != "/dev/mmcblk0" || p.Number != 2 || p.FreeMiB != (62333952-532480-1048576)/2048 {
		t.Errorf("PlanGrow(p2) = %+v, %v", p, err)
	}
	if p, err := PlanGrow(block, "/dev/mmcblk0p1"); err != nil || p.Grow {
		t.Errorf("PlanGrow(p1, not last) = %+v, %v; want no growth", p, err)
	}
	write(filepath.Join(devs, "mmcblk0p2", "size"), strconv.Itoa(62333952-532480))
	if p, err := PlanGrow(block, "/dev/mmcblk0p2"); err != nil || p.Grow {
		t.Errorf("PlanGrow(full) = %+v, %v; want no growth", p, err)
	}
}
