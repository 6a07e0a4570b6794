package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/layout"
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

// The card's first boot keeps the node's own config and wipes the rest,
// with their bytes zeroed; later boots use the kept one.
func TestClaimConfig(t *testing.T) {
	state := t.TempDir()
	card := filepath.Join(state, layout.ConfigDir)
	os.MkdirAll(card, 0o755)
	mine, other := "dc:a6:32:00:00:01", "dc:a6:32:00:00:02"
	os.WriteFile(filepath.Join(card, mine+".yaml"), []byte("hostname: a\n"), 0o600)
	os.WriteFile(filepath.Join(card, other+".yaml"), []byte("k3os: {token: server-secret}\n"), 0o600)
	os.WriteFile(filepath.Join(card, "default.yaml"), []byte("k3os: {agent_token: x}\n"), 0o600)
	// A second name of the other node's file shows what became of its bytes.
	spy := filepath.Join(state, "spy")
	os.Link(filepath.Join(card, other+".yaml"), spy)

	own, picked, err := claimConfig(state, mine)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(picked) != mine+".yaml" || own != filepath.Join(state, layout.NodeConfigDir, "card.yaml") {
		t.Fatalf("claimConfig = %s, %s", own, picked)
	}
	if b, _ := os.ReadFile(own); string(b) != "hostname: a\n" {
		t.Errorf("kept %q", b)
	}
	if _, err := os.Stat(card); err == nil {
		t.Error("the card's config directory is still there")
	}
	if b, _ := os.ReadFile(spy); strings.Contains(string(b), "server-secret") || len(b) == 0 {
		t.Errorf("the other node's file was removed, not wiped: its bytes are %q", b)
	}
	// The next boot finds its config, whatever the MAC says.
	if own2, picked, err := claimConfig(state, other); own2 != own || picked != "" || err != nil {
		t.Errorf("second boot: %s %s %v", own2, picked, err)
	}
	// No wired port seen: nothing is claimed or wiped.
	fresh := t.TempDir()
	os.MkdirAll(filepath.Join(fresh, layout.ConfigDir), 0o755)
	os.WriteFile(filepath.Join(fresh, layout.ConfigDir, "default.yaml"), []byte("{}\n"), 0o600)
	if own, _, _ := claimConfig(fresh, ""); own != "" {
		t.Errorf("claimed %s without a MAC", own)
	}
	if _, err := os.Stat(filepath.Join(fresh, layout.ConfigDir, "default.yaml")); err != nil {
		t.Error("wiped without a MAC")
	}
}

// The machine id is made once and kept across versions; a card's id that
// systemd committed into a version's /etc is taken over.
func TestMachineID(t *testing.T) {
	data := t.TempDir()
	etc := filepath.Join(data, "etc", "1.0.0")
	os.MkdirAll(filepath.Join(etc, "upper"), 0o755)
	os.WriteFile(filepath.Join(etc, "upper", "machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	p, err := machineID(data, etc)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "0123456789abcdef0123456789abcdef\n" {
		t.Errorf("the committed id was not taken over: %q", b)
	}
	fresh := t.TempDir()
	p, err = machineID(fresh, filepath.Join(fresh, "etc", "2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(p)
	if !validMachineID(first) {
		t.Fatalf("made %q", first)
	}
	p, _ = machineID(fresh, filepath.Join(fresh, "etc", "3.0.0"))
	if again, _ := os.ReadFile(p); string(again) != string(first) {
		t.Errorf("another version got another id: %q, then %q", first, again)
	}
}
