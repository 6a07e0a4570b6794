package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestExt4Label(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 (e2fsprogs) not installed")
	}
	img := filepath.Join(t.TempDir(), "state.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-L", StateLabel, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if got := ext4Label(img); got != StateLabel {
		t.Errorf("ext4Label = %q, want %q", got, StateLabel)
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
