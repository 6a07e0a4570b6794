package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/k3os-rpi/k3os-rpi4/agent/durable"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// What the image is: a bundle for anything else is refused.
const (
	Board = "rpi4"
	Arch  = "arm64"
)

// Options of an upgrade.
type Options struct {
	AllowDowngrade bool
	// NoReboot stages and arms the trial; the next reboot tries it.
	NoReboot bool
	// HealthTimeout bounds the trial boot's health check.
	HealthTimeout time.Duration
}

// DefaultHealthTimeout is how long a trial boot may take to be healthy:
// k3s's first start on a Pi takes a minute or two.
const DefaultHealthTimeout = 10 * time.Minute

// Refused is an upgrade the node turned down before changing anything.
type Refused struct{ Why string }

func (r Refused) Error() string { return "upgrade refused: " + r.Why }

// Upgrade reads a bundle from r, checks it, stages what it carries beside
// the running version, writes it into the other boot slot and arms a
// try-once boot of it (and reboots, unless told not to). A bundle that is
// unsigned, signed by another key, truncated, altered, for another board,
// or a downgrade (unless allowed) is refused with one line saying why, and
// nothing the node boots or runs changes.
func (n *Node) Upgrade(ctx context.Context, r io.Reader, o Options) error {
	if o.HealthTimeout == 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	keys, err := n.Keys()
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return Refused{"this node trusts no upgrade key (its image was built without UPGRADE_KEY): reflash it with one"}
	}
	b, err := bundle.Open(r, keys)
	if err != nil {
		return Refused{err.Error()}
	}
	m := b.Manifest
	if m.Board != Board || m.Arch != Arch {
		return Refused{fmt.Sprintf("the bundle is for %s-%s; this node is %s-%s", m.Board, m.Arch, Board, Arch)}
	}
	committed, other, cv, cc, err := n.Committed()
	if err != nil {
		return err
	}
	rec, err := n.ReadRecord()
	if err != nil {
		return err
	}
	if rec.Trial != nil && n.Boot.Trial {
		return Refused{"a trial boot of " + rec.Trial.Version + " is still being checked: wait for it to commit or roll back"}
	}
	if m.HasSystem() {
		switch d := bundle.Newer(m.Version, cv); {
		case d < 0 && !o.AllowDowngrade:
			return Refused{fmt.Sprintf("%s is older than the committed %s (--allow-downgrade to go back)", m.Version, cv)}
		case d == 0 && len(m.Configs()) == 0:
			return Refused{"the node already runs " + cv}
		}
	} else if len(m.Configs()) == 0 {
		return Refused{"the bundle carries neither a system version nor node configs"}
	}
	if err := n.CanTry(); err != nil {
		return Refused{err.Error()}
	}
	n.say("upgrade: %s (signed by key %X), from %s in slot %d to slot %d", m.Version, b.Key.ID(), cv, committed, other)
	version, config := cv, cc
	if m.HasSystem() {
		version = m.Version
	}
	n.mark("staging %s", m.Version)
	staged, ownConfig, err := n.stage(b, version, cv)
	if err != nil {
		return err
	}
	if ownConfig != nil {
		config, err = n.keepConfig(ownConfig)
		if err != nil {
			return err
		}
	} else if m.HasSystem() && len(m.Configs()) > 0 {
		n.say("upgrade: the bundle has no config for %s (nor a default.yaml): the node keeps its own", n.Boot.MAC)
	}
	if staged {
		n.say("upgrade: staged %s", version)
	}
	n.mark("writing slot %d", other)
	if err := n.writeSlot(other, version, config); err != nil {
		return fmt.Errorf("writing boot slot %d: %w", other, err)
	}
	rec.Trial = &Trial{Version: version, Config: config, Slot: other, FromVersion: cv, FromConfig: cc, FromSlot: committed,
		Armed: time.Now().UTC(), HealthTimeout: o.HealthTimeout}
	if err := n.writeRecord(rec); err != nil {
		return err
	}
	n.mark("armed %s (config %s) in slot %d", version, config, other)
	if o.NoReboot {
		if err := durable.WriteFile(n.RebootParam, []byte("0 tryboot\n"), 0o644); err != nil {
			return err
		}
		n.say("upgrade: %s is armed in slot %d: the next reboot tries it once", version, other)
		return nil
	}
	n.say("upgrade: rebooting to try %s once", version)
	return n.Reboot("0 tryboot")
}

// stage writes the bundle's system version into SystemDir/version (under
// a temporary name, renamed when every byte is checked and synced) and
// returns the node's own config from it. Members are read to their end,
// so that every checksum is checked whatever the node keeps.
func (n *Node) stage(b *bundle.Reader, version, committed string) (staged bool, own []byte, err error) {
	m := b.Manifest
	dst := n.path(layout.SystemDir, version)
	tmp := n.path(layout.SystemDir, ".staging-"+version)
	have := version == committed // the running version is there, whole
	if !have && m.HasSystem() {
		if err := n.makeRoom(m, version); err != nil {
			return false, nil, err
		}
		if err := os.RemoveAll(tmp); err != nil {
			return false, nil, err
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return false, nil, err
		}
		defer os.RemoveAll(tmp) // gone once renamed; left over on a failure
	}
	configName := ""
	if name := configFile(m.Configs(), n.Boot.MAC); name != "" {
		configName = bundle.ConfigPrefix + name
	}
	for {
		mem, r, err := b.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, nil, Refused{err.Error()}
		}
		n.mark("staging %s", mem.Name)
		switch {
		case mem.Name == configName:
			if own, err = io.ReadAll(r); err != nil {
				return false, nil, Refused{err.Error()}
			}
		case !have && isSystem(mem.Name):
			if err := stageFile(tmp, mem.Name, r); err != nil {
				if errors.As(err, new(Refused)) {
					return false, nil, err
				}
				return false, nil, fmt.Errorf("staging %s: %w", mem.Name, err)
			}
		default:
			if _, err := io.Copy(io.Discard, r); err != nil {
				return false, nil, Refused{err.Error()}
			}
		}
	}
	if have || !m.HasSystem() {
		return false, own, nil
	}
	for _, d := range []string{filepath.Join(tmp, layout.VersionImages), tmp} {
		if err := durable.SyncDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, nil, err
		}
	}
	if err := os.RemoveAll(dst); err != nil { // a stale copy of this version
		return false, nil, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, nil, err
	}
	return true, own, durable.SyncDir(filepath.Dir(dst))
}

func isSystem(name string) bool {
	for _, s := range bundle.SystemMembers {
		if name == s {
			return true
		}
	}
	img, ok := strings.CutPrefix(name, bundle.ImagesPrefix)
	return ok && img != "" && !strings.Contains(img, "/")
}

// configFile picks the node's file among a bundle's configs, as the card's
// first boot does: its MAC's, else default.yaml.
func configFile(names []string, mac string) string {
	want, _ := nodeconfig.NormalizeMAC(mac)
	for _, n := range names {
		if m, ok := nodeconfig.NormalizeMAC(strings.TrimSuffix(n, filepath.Ext(n))); ok && m == want {
			return n
		}
	}
	for _, n := range names {
		if strings.TrimSuffix(n, filepath.Ext(n)) == nodeconfig.DefaultName {
			return n
		}
	}
	return ""
}

// stageFile writes one member into dir and syncs it; the boot image is
// decompressed, its empty blocks left as holes. A member that fails to
// decompress is read to its end: whether its bytes are the signed ones
// says if the bundle was altered or cut short.
func stageFile(dir, name string, r io.Reader) error {
	member, out := r, name
	var zr *zstd.Decoder
	if name == bundle.BootImage {
		var err error
		// Synchronous: the member is read in this goroutine alone.
		if zr, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1)); err != nil {
			return err
		}
		defer zr.Close()
		r, out = zr, layout.BootImage
	}
	if img, ok := strings.CutPrefix(name, bundle.ImagesPrefix); ok {
		out = filepath.Join(layout.VersionImages, img)
		if err := os.MkdirAll(filepath.Join(dir, layout.VersionImages), 0o755); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, out), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	err = copySparse(f, r)
	if err != nil && zr != nil {
		if _, derr := io.Copy(io.Discard, member); derr != nil {
			err = derr
		}
	}
	if err != nil {
		if errors.Is(err, bundle.ErrAltered) || errors.Is(err, bundle.ErrTruncated) {
			return Refused{err.Error()}
		}
		return err
	}
	return f.Sync()
}

// copySparse copies r to f, seeking over blocks of zeros.
func copySparse(f *os.File, r io.Reader) error {
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zero[:n]) {
				if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			size += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return f.Truncate(size)
		}
		if err != nil {
			return err
		}
	}
}

// keepConfig checks the node's config from a bundle and keeps it as
// NodeConfigDir/<id>.yaml, id a digest of its content.
func (n *Node) keepConfig(data []byte) (string, error) {
	d, r := nodeconfig.Parse("the bundle's config", data)
	if d == nil || r.HasErrors() {
		return "", Refused{"the bundle's config for this node is not valid: " + r.Err().Error()}
	}
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:6])
	return id, durable.WriteFile(n.path(layout.NodeConfigDir, id+".yaml"), data, 0o600)
}

// makeRoom checks the state partition has room for a version, removing
// the versions no slot and no trial names if it has not.
func (n *Node) makeRoom(m bundle.Manifest, version string) error {
	need := int64(layout.BootMiB << 20)
	for _, mem := range m.Members {
		if isSystem(mem.Name) {
			need += mem.Size
		}
	}
	need += need / 10
	if free(n.State) >= need {
		return nil
	}
	if err := n.prune(version); err != nil {
		return err
	}
	if f := free(n.State); f < need {
		return Refused{fmt.Sprintf("the state partition has %d MiB free, the version needs %d MiB", f>>20, need>>20)}
	}
	return nil
}

func free(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// prune removes the system versions and configs that neither boot slot
// names, nor a trial, nor keep.
func (n *Node) prune(keep ...string) error {
	versions, configs := map[string]bool{}, map[string]bool{layout.CardConfig: true}
	for _, v := range keep {
		versions[v] = true
	}
	for _, s := range []int{layout.BootA, layout.BootB} {
		v, c, err := n.SlotHolds(s)
		if err != nil {
			return err
		}
		versions[v], configs[c] = true, true
	}
	rec, err := n.ReadRecord()
	if err != nil {
		return err
	}
	if rec.Trial != nil {
		versions[rec.Trial.Version], configs[rec.Trial.Config] = true, true
	}
	if rec.Previous != nil {
		versions[rec.Previous.Version], configs[rec.Previous.Config] = true, true
	}
	entries, _ := os.ReadDir(n.path(layout.SystemDir))
	for _, e := range entries {
		if !versions[e.Name()] {
			n.say("upgrade: removing %s, which no slot boots", e.Name())
			if err := os.RemoveAll(n.path(layout.SystemDir, e.Name())); err != nil {
				return err
			}
		}
	}
	cfgs, _ := os.ReadDir(n.path(layout.NodeConfigDir))
	for _, e := range cfgs {
		if id := strings.TrimSuffix(e.Name(), ".yaml"); !configs[id] {
			os.Remove(n.path(layout.NodeConfigDir, e.Name()))
		}
	}
	return nil
}

// writeSlot writes a version's boot image into a boot slot, then sets the
// config its command line names.
func (n *Node) writeSlot(slot int, version, config string) error {
	dev, err := n.Partition(slot)
	if err != nil {
		return err
	}
	img, err := os.Open(n.path(layout.SystemDir, version, layout.BootImage))
	if err != nil {
		return err
	}
	defer img.Close()
	out, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, img)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return n.writeFAT(dev, func(f FAT) error {
		b, err := f.ReadFile("cmdline.txt")
		if err != nil {
			return err
		}
		if got := param(string(b), layout.SystemParam); got != version {
			return fmt.Errorf("the boot image of %s names the version %q", version, got)
		}
		var words []string
		for _, w := range strings.Fields(string(b)) {
			if !strings.HasPrefix(w, layout.ConfigParam+"=") {
				words = append(words, w)
			}
		}
		words = append(words, layout.ConfigParam+"="+config)
		return f.WriteFile("cmdline.txt", []byte(strings.Join(words, " ")+"\n"))
	})
}
