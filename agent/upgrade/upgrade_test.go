package upgrade

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/klauspost/compress/zstd"

	"github.com/k3os-rpi/k3os-rpi4/agent/boot"
	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// imageFAT is a FAT image file read and written with go-diskfs: the test
// machine's kernel has no vfat to mount one with.
type imageFAT struct {
	fs    filesystem.FileSystem
	write bool
}

// openImageFAT opens a FAT image; opened to read, it refuses writes.
func openImageFAT(dev string, write bool) (FAT, func() error, error) {
	d, err := diskfs.Open(dev)
	if err != nil {
		return nil, nil, err
	}
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return imageFAT{fsys, write}, d.Close, nil
}

func (f imageFAT) ReadFile(name string) ([]byte, error) {
	h, err := f.fs.OpenFile("/"+name, os.O_RDONLY)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil, os.ErrNotExist
		}
		return nil, err
	}
	return io.ReadAll(h)
}

func (f imageFAT) WriteFile(name string, data []byte) error {
	if !f.write {
		return errors.New("a FAT opened to read was written")
	}
	h, err := f.fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	_, err = h.Write(data)
	return err
}

// fatImage makes a FAT32 image file holding files.
func fatImage(t *testing.T, path string, files map[string]string) {
	t.Helper()
	d, err := diskfs.Create(path, 40<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeFat32})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := (imageFAT{fsys, true}).WriteFile(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
}

func cmdline(version string) string {
	return "root=LABEL=K3OS_STATE panic=10 " + layout.SystemParam + "=" + version + " " + layout.ConfigParam + "=" + layout.CardConfig + "\n"
}

// testNode is a node with version 1.0.0 committed in slot 2 and an empty
// slot 3, on image files; it trusts key and records its reboots.
type testNode struct {
	*Node
	dir     string
	reboots []string
}

func newTestNode(t *testing.T, pub minisign.PublicKey) *testNode {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sys := filepath.Join(state, layout.SystemDir, "1.0.0")
	os.MkdirAll(sys, 0o755)
	for _, f := range []string{bundle.RootFS, bundle.Modules, bundle.Release} {
		os.WriteFile(filepath.Join(sys, f), []byte("v1 "+f), 0o644)
	}
	fatImage(t, filepath.Join(sys, layout.BootImage), map[string]string{"cmdline.txt": cmdline("1.0.0"), "config.txt": "kernel=Image\n"})
	fatImage(t, filepath.Join(dir, "p1"), map[string]string{layout.AutobootFile: layout.Autoboot(layout.BootA, layout.BootB)})
	b, _ := os.ReadFile(filepath.Join(sys, layout.BootImage))
	os.WriteFile(filepath.Join(dir, "p2"), b, 0o644)
	fatImage(t, filepath.Join(dir, "p3"), nil)
	os.MkdirAll(filepath.Join(state, layout.TrustDir), 0o755)
	text, _ := pub.MarshalText()
	os.WriteFile(filepath.Join(state, layout.TrustDir, "test.pub"), text, 0o644)
	bl := filepath.Join(dir, "bootloader")
	os.MkdirAll(bl, 0o755)
	be := func(v uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, v); return b }
	os.WriteFile(filepath.Join(bl, "capabilities"), be(0x0c), 0o644)
	os.WriteFile(filepath.Join(bl, "partition"), be(2), 0o644)
	var cfg bytes.Buffer
	zw := gzip.NewWriter(&cfg)
	zw.Write([]byte("CONFIG_A=y\n" + trybootConfigKey + "\n"))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "config.gz"), cfg.Bytes(), 0o644)
	n := &testNode{dir: dir}
	n.Node = &Node{
		State: state, Bootloader: bl, KernelConfig: filepath.Join(dir, "config.gz"),
		Boot:      boot.Record{Version: "1.0.0", Config: layout.CardConfig, Slot: 2, MAC: "dc:a6:32:00:00:01", Kernel: "6.12.117"},
		Partition: func(p int) (string, error) { return filepath.Join(dir, "p"+string(rune('0'+p))), nil },
		OpenFAT:   openImageFAT, RebootParam: filepath.Join(dir, "reboot-param"), Out: io.Discard,
		Reboot: func(arg string) error { n.reboots = append(n.reboots, arg); return nil },
	}
	return n
}

// newBundle is a bundle of version v signed with key, with configs.
func newBundle(t *testing.T, key minisign.PrivateKey, v string, system bool, configs map[string]string) []byte {
	t.Helper()
	var sources []bundle.Source
	add := func(name string, data []byte) {
		sources = append(sources, bundle.Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }})
	}
	if system {
		img := filepath.Join(t.TempDir(), "boot.vfat")
		fatImage(t, img, map[string]string{"cmdline.txt": cmdline(v), "config.txt": "kernel=Image\n"})
		raw, _ := os.ReadFile(img)
		var z bytes.Buffer
		zw, _ := zstd.NewWriter(&z)
		zw.Write(raw)
		zw.Close()
		add(bundle.BootImage, z.Bytes())
		for _, f := range []string{bundle.RootFS, bundle.Modules, bundle.Release} {
			add(f, []byte(v+" "+f+strings.Repeat(".", 4096)))
		}
	}
	for name, c := range configs {
		add(bundle.ConfigPrefix+name, []byte(c))
	}
	var out bytes.Buffer
	if _, err := bundle.Write(&out, bundle.Manifest{Board: Board, Arch: Arch, Version: v}, sources, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func keys(t *testing.T) (minisign.PublicKey, minisign.PrivateKey) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// snapshot is every file of the node, for "nothing changed".
func (n *testNode) snapshot(t *testing.T) map[string]string {
	out := map[string]string{}
	filepath.Walk(n.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}

func (n *testNode) holds(t *testing.T, slot int) (string, string) {
	t.Helper()
	v, c, err := n.SlotHolds(slot)
	if err != nil {
		t.Fatal(err)
	}
	return v, c
}

// v1 -> v2: staged, slot 3 written, a trial armed; the trial boot
// commits; the next normal boot has nothing to settle.
func TestUpgradeAndCommit(t *testing.T) {
	pub, priv := keys(t)
	n := newTestNode(t, pub)
	b := newBundle(t, priv, "2.0.0", true, map[string]string{"dc:a6:32:00:00:01.yaml": "hostname: new\n", "default.yaml": "hostname: other\n"})
	if err := n.Upgrade(context.Background(), bytes.NewReader(b), Options{}); err != nil {
		t.Fatal(err)
	}
	if len(n.reboots) != 1 || n.reboots[0] != "0 tryboot" {
		t.Fatalf("reboots %q, want one with tryboot", n.reboots)
	}
	v, c := n.holds(t, layout.BootB)
	if v != "2.0.0" || c == layout.CardConfig || c == "" {
		t.Fatalf("slot 3 holds %q %q", v, c)
	}
	if got, _ := os.ReadFile(n.path(layout.NodeConfigDir, c+".yaml")); string(got) != "hostname: new\n" {
		t.Errorf("kept config %q", got)
	}
	if got, _ := os.ReadFile(n.path(layout.SystemDir, "2.0.0", bundle.RootFS)); !strings.HasPrefix(string(got), "2.0.0 rootfs") {
		t.Errorf("staged root %q", got)
	}
	if committed, _, _ := n.Slots(); committed != layout.BootA {
		t.Errorf("committed slot %d before the trial", committed)
	}
	// The trial boot: healthy.
	n.Boot = boot.Record{Version: "2.0.0", Config: c, Slot: layout.BootB, Trial: true}
	if err := n.AtBoot(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if committed, _, _ := n.Slots(); committed != layout.BootB {
		t.Errorf("after a healthy trial the firmware boots slot %d", committed)
	}
	rec, _ := n.ReadRecord()
	if rec.Trial != nil || rec.Last == nil || rec.Last.Result != "committed" || rec.Last.Version != "2.0.0" {
		t.Errorf("record %+v", rec)
	}
	// Both versions kept: the previous one is the other slot's.
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if _, err := os.Stat(n.path(layout.SystemDir, v)); err != nil {
			t.Errorf("version %s removed", v)
		}
	}
}

// A trial whose health fails reboots into the committed slot, and that
// boot records why; so does one that never reaches its check (a panic).
func TestTrialFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health error
		want   string
	}{
		{"health fails", Fatal{errors.New("apply step sysctl failed")}, "apply step sysctl failed"},
		{"panic", nil, "its trial did not finish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, priv := keys(t)
			n := newTestNode(t, pub)
			if err := n.Upgrade(context.Background(), bytes.NewReader(newBundle(t, priv, "3.0.0", true, nil)), Options{}); err != nil {
				t.Fatal(err)
			}
			if tc.health != nil {
				n.Boot = boot.Record{Version: "3.0.0", Config: layout.CardConfig, Slot: layout.BootB, Trial: true}
				if err := n.AtBoot(context.Background(), func(context.Context) error { return tc.health }); err != nil {
					t.Fatal(err)
				}
				if len(n.reboots) != 2 || n.reboots[1] != "" {
					t.Fatalf("reboots %q: want a plain reboot after the failed check", n.reboots)
				}
			}
			// Back on the committed slot, a normal boot.
			n.Boot = boot.Record{Version: "1.0.0", Config: layout.CardConfig, Slot: layout.BootA}
			if err := n.AtBoot(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			rec, _ := n.ReadRecord()
			if rec.Trial != nil || rec.Last == nil || rec.Last.Result != "rolled back" || !strings.Contains(rec.Last.Reason, tc.want) {
				t.Errorf("record %+v, want rolled back: %s", rec.Last, tc.want)
			}
			if committed, _, _ := n.Slots(); committed != layout.BootA {
				t.Errorf("the firmware boots slot %d", committed)
			}
		})
	}
}

// Bad bundles are refused with the reason, and not a byte of the node
// changes.
func TestRefusedBundles(t *testing.T) {
	pub, priv := keys(t)
	_, otherPriv := keys(t)
	good := newBundle(t, priv, "2.0.0", true, nil)
	altered := bytes.Clone(good)
	i := bytes.Index(altered, []byte("2.0.0 rootfs"))
	altered[i+3] = 'X'
	var wrongArch bytes.Buffer
	bundle.Write(&wrongArch, bundle.Manifest{Board: Board, Arch: "amd64", Version: "2.0.0"},
		[]bundle.Source{{Name: bundle.Release, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }}}, priv)
	for _, tc := range []struct {
		name   string
		b      []byte
		o      Options
		want   string
		noTry  bool
		broken bool
	}{
		{"other key", newBundle(t, otherPriv, "2.0.0", true, nil), Options{}, "signed by a key this node does not trust", false, false},
		{"truncated", good[:len(good)-6000], Options{}, "truncated", false, false},
		{"altered", altered, Options{}, "altered", false, false},
		{"other arch", wrongArch.Bytes(), Options{}, "for rpi4-amd64", false, false},
		{"downgrade", newBundle(t, priv, "0.9.0", true, nil), Options{}, "older than the committed 1.0.0", false, false},
		{"same version", newBundle(t, priv, "1.0.0", true, nil), Options{}, "already runs 1.0.0", false, false},
		{"no tryboot kernel", good, Options{}, "cannot ask the firmware for a try-once boot", true, false},
		{"old EEPROM", good, Options{}, "offers no A/B try-once boot", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, pub)
			if tc.noTry {
				var cfg bytes.Buffer
				zw := gzip.NewWriter(&cfg)
				zw.Write([]byte("CONFIG_A=y\n"))
				zw.Close()
				os.WriteFile(n.KernelConfig, cfg.Bytes(), 0o644)
			}
			if tc.broken {
				os.Remove(filepath.Join(n.Bootloader, "capabilities"))
				b := make([]byte, 4)
				binary.BigEndian.PutUint32(b, 1619136000) // 2021-04-23
				os.WriteFile(filepath.Join(n.Bootloader, "build-timestamp"), b, 0o644)
			}
			before := n.snapshot(t)
			err := n.Upgrade(context.Background(), bytes.NewReader(tc.b), tc.o)
			if !errors.As(err, new(Refused)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Upgrade = %v, want a refusal saying %q", err, tc.want)
			}
			after := n.snapshot(t)
			if len(after) != len(before) {
				t.Errorf("files: %d before, %d after", len(before), len(after))
			}
			for p, c := range before {
				if after[p] != c {
					t.Errorf("%s changed", p)
				}
			}
			if len(n.reboots) != 0 {
				t.Error("a refused upgrade rebooted")
			}
		})
	}
	// A downgrade asked for is staged.
	n := newTestNode(t, pub)
	if err := n.Upgrade(context.Background(), bytes.NewReader(newBundle(t, priv, "0.9.0", true, nil)), Options{AllowDowngrade: true, NoReboot: true}); err != nil {
		t.Fatal(err)
	}
	if p, _ := os.ReadFile(n.RebootParam); string(p) != "0 tryboot\n" || len(n.reboots) != 0 {
		t.Errorf("--no-reboot: reboot-param %q, reboots %q", p, n.reboots)
	}
}

// A config-only bundle tries the same system with the node's new config.
func TestConfigOnly(t *testing.T) {
	pub, priv := keys(t)
	n := newTestNode(t, pub)
	b := newBundle(t, priv, "1.0.0", false, map[string]string{"default.yaml": "hostname: renamed\n"})
	if err := n.Upgrade(context.Background(), bytes.NewReader(b), Options{}); err != nil {
		t.Fatal(err)
	}
	v, c := n.holds(t, layout.BootB)
	if v != "1.0.0" || c == layout.CardConfig {
		t.Errorf("slot 3 holds %q %q", v, c)
	}
}

// A rollback by hand goes back to the version committed before, and
// again forward; an armed trial is cancelled.
func TestRollback(t *testing.T) {
	pub, priv := keys(t)
	n := newTestNode(t, pub)
	if err := n.Rollback(context.Background(), "", false); err == nil || !strings.Contains(err.Error(), "nothing to go back to") {
		t.Errorf("rollback of a card never upgraded: %v", err)
	}
	n.Upgrade(context.Background(), bytes.NewReader(newBundle(t, priv, "2.0.0", true, nil)), Options{})
	n.Boot = boot.Record{Version: "2.0.0", Config: layout.CardConfig, Slot: layout.BootB, Trial: true}
	if err := n.AtBoot(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	n.Boot.Trial = false
	if err := n.Rollback(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	if committed, _, _ := n.Slots(); committed != layout.BootA {
		t.Errorf("after a rollback the firmware boots slot %d", committed)
	}
	rec, _ := n.ReadRecord()
	if rec.Last.Result != "rolled back" || !strings.Contains(rec.Last.Reason, "by hand") || rec.Previous.Version != "2.0.0" {
		t.Errorf("record %+v, previous %+v", rec.Last, rec.Previous)
	}

	// Back on 1.0.0 in slot 2; 3.0.0 is armed, not yet tried, and fails
	// its trial: the next rollback goes to 2.0.0, written again into slot 3.
	n.Boot = boot.Record{Version: "1.0.0", Config: layout.CardConfig, Slot: layout.BootA}
	if err := n.Upgrade(context.Background(), bytes.NewReader(newBundle(t, priv, "3.0.0", true, nil)), Options{NoReboot: true}); err != nil {
		t.Fatal(err)
	}
	if err := n.Rollback(context.Background(), "", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.RebootParam); !errors.Is(err, os.ErrNotExist) {
		t.Error("the cancelled trial is still asked for the next reboot")
	}
	if v, _ := n.holds(t, layout.BootB); v != "2.0.0" {
		t.Errorf("slot 3 holds %s, want 2.0.0 again", v)
	}
	if committed, _, _ := n.Slots(); committed != layout.BootB {
		t.Errorf("the firmware boots slot %d, want 3", committed)
	}
}
