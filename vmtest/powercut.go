package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// cutPoint is a moment of an upgrade at which the power-cut case kills
// QEMU: delay after a console line, in the upgrade itself or in the trial
// boot that follows its reboot.
type cutPoint struct {
	marker string
	delay  time.Duration
	trial  bool
	// committed says what the next boot must run: the new version only
	// once the commit is written; either one during it.
	outcome string // "v1", "v2" or "either"
}

func (p cutPoint) String() string {
	where := "the upgrade"
	if p.trial {
		where = "the trial boot"
	}
	return fmt.Sprintf("%s, %q +%s", where, strings.TrimPrefix(p.marker, "k3os: upgrade: "), p.delay)
}

// cutPoints are spread over an upgrade: while it writes the new version
// (each member, early and late), while it writes the boot slot, between
// arming and the reboot, through the trial boot (initramfs, root, apply,
// health check) and around the commit. phases is one per phase.
func cutPoints(all bool) []cutPoint {
	const up = "k3os: upgrade: "
	points := []struct {
		cutPoint
		phase bool
	}{
		{cutPoint{up + "staging boot.vfat.zst", 0, false, "v1"}, false},
		{cutPoint{up + "staging boot.vfat.zst", 400 * time.Millisecond, false, "v1"}, false},
		{cutPoint{up + "staging rootfs.squashfs", 0, false, "v1"}, false},
		{cutPoint{up + "staging rootfs.squashfs", time.Second, false, "v1"}, true},
		{cutPoint{up + "staging rootfs.squashfs", 3 * time.Second, false, "v1"}, false},
		{cutPoint{up + "staging modules.squashfs", 0, false, "v1"}, false},
		{cutPoint{up + "staging modules.squashfs", 300 * time.Millisecond, false, "v1"}, false},
		{cutPoint{up + "staging k3os-release", 0, false, "v1"}, false},
		{cutPoint{up + "writing slot", 0, false, "v1"}, false},
		{cutPoint{up + "writing slot", 300 * time.Millisecond, false, "v1"}, true},
		{cutPoint{up + "writing slot", time.Second, false, "v1"}, false},
		{cutPoint{up + "armed", 0, false, "v1"}, true},
		{cutPoint{up + "armed", 500 * time.Millisecond, false, "v1"}, false},
		{cutPoint{"k3os-init:", 0, true, "v1"}, false},
		{cutPoint{"k3os-init: state partition", 0, true, "v1"}, false},
		{cutPoint{"k3os-init: switching to k3os", 0, true, "v1"}, true},
		{cutPoint{" configured: ", 0, true, "v1"}, false},
		{cutPoint{up + "trial of", 0, true, "v1"}, true},
		{cutPoint{up + "committing", 0, true, "either"}, true},
		{cutPoint{up + "committing", 30 * time.Millisecond, true, "either"}, false},
		{cutPoint{up + "committed", 0, true, "v2"}, true},
		{cutPoint{up + "committed", 2 * time.Second, true, "v2"}, false},
	}
	var out []cutPoint
	for _, p := range points {
		if all || p.phase {
			out = append(out, p.cutPoint)
		}
	}
	return out
}

// PowerCuts cuts the power of a node at points spread over an upgrade
// from v1 to v2; every next boot must run one whole version, v1 or v2
// (the slot's version with its own kernel and root), and the node must
// take the next upgrade from whatever the cut left.
func (s *Suite) PowerCuts(ctx context.Context, c *Case) error {
	if err := s.needUpgrades(); err != nil {
		return err
	}
	u := s.Upgrades
	data, err := os.ReadFile(u.Bundle)
	if err != nil {
		return err
	}
	m, err := s.machine(c.Name, PowerCutMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	points := cutPoints(u.AllPowerCuts)
	fresh := true
	var last *cutPoint
	outcomes := map[string]int{}
	for i := 0; i <= len(points); i++ {
		if err := s.boot(ctx, m, fresh); err != nil {
			return s.cutFailed(last, err)
		}
		fresh = false
		b, err := s.waitBooted(ctx, m, "", false)
		if err != nil {
			return s.cutFailed(last, err)
		}
		if last != nil {
			got := map[string]string{u.V1: "v1", u.V2: "v2"}[b.Version]
			if last.outcome != "either" && got != last.outcome {
				return s.cutFailed(last, fmt.Errorf("the next boot ran %s (%s), want %s", got, b.Version, last.outcome))
			}
			outcomes[got]++
			s.logf("power cut %d of %d (%s): the next boot runs %s whole (kernel %s, slot %d)", i, len(points), last, b.Version, b.Kernel, b.Slot)
		}
		if i == len(points) {
			break
		}
		if b.Version == u.V2 {
			// The upgrade is done: the next cut starts from v1 again.
			m.Stop()
			if err := s.boot(ctx, m, true); err != nil {
				return err
			}
		}
		p := points[i]
		sess, err := s.login(ctx, m)
		if err != nil {
			return s.cutFailed(last, err)
		}
		go sess.RunInput("sudo k3os upgrade -", bytes.NewReader(data))
		if p.trial {
			if err := m.Restart(ctx, toRestart); err != nil {
				return err
			}
		}
		if _, err := m.WaitFor(ctx, "cut point", p.marker, toCommit); err != nil {
			return err
		}
		if err := sleep(ctx, p.delay); err != nil {
			return err
		}
		m.Stop()
		sess.Close()
		last = &points[i]
	}
	s.logf("power cuts: %d, the next boot ran v1 %d times and v2 %d times, each whole", len(points), outcomes["v1"], outcomes["v2"])
	return nil
}

func (s *Suite) cutFailed(p *cutPoint, err error) error {
	if p == nil {
		return err
	}
	return fmt.Errorf("after the power cut at %s: %w", p, err)
}
