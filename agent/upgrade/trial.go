package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// Check is a health check of the node: nil when healthy, else why not
// yet. It is asked again until it passes, fails for good (a Fatal error),
// or the trial's time is up.
type Check func(ctx context.Context) error

// Fatal is a health failure that waiting will not mend (an apply step
// failed).
type Fatal struct{ error }

// AtBoot is what every boot does about upgrades (k3os-health.service):
// a trial boot checks the node's health and commits the version, or
// records why not and reboots into the committed slot; a normal boot
// settles a trial that did not finish (it panicked, hung, lost power or
// failed its health check): it records that the node is back on the
// committed version, and why.
func (n *Node) AtBoot(ctx context.Context, check Check) error {
	rec, err := n.ReadRecord()
	if err != nil {
		return err
	}
	if !n.Boot.Trial {
		return n.settle(rec)
	}
	t := rec.Trial
	if t == nil || t.Slot != n.Boot.Slot || t.Version != n.Boot.Version || t.Config != n.Boot.Config {
		n.say("upgrade: a try-once boot of slot %d, but no upgrade armed it: back to the committed slot", n.Boot.Slot)
		return n.Reboot("")
	}
	n.mark("trial of %s: checking health (at most %s)", t.Version, t.HealthTimeout)
	if err := waitHealthy(ctx, check, t.HealthTimeout); err != nil {
		t.Failed = err.Error()
		if werr := n.writeRecord(rec); werr != nil {
			return errors.Join(err, werr)
		}
		n.mark("trial of %s failed: %v; rolling back", t.Version, err)
		return n.Reboot("")
	}
	return n.commit(rec)
}

func waitHealthy(ctx context.Context, check Check, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		err := check(ctx)
		var fatal Fatal
		switch {
		case err == nil:
			return nil
		case errors.As(err, &fatal):
			return err
		}
		// A check cut short by the deadline says only that it was cut
		// short: the one before it says what was not yet healthy.
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %s: %w", timeout, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// commit makes the trial's slot the one the firmware boots: one small
// file rewritten whole (synced, renamed) on the autoboot partition.
func (n *Node) commit(rec Record) error {
	t := rec.Trial
	n.mark("committing %s", t.Version)
	if err := n.setAutoboot(t.Slot); err != nil {
		return fmt.Errorf("committing %s: %w", t.Version, err)
	}
	rec.Last = &Outcome{Version: t.Version, Config: t.Config, Result: "committed", At: time.Now().UTC()}
	rec.Previous = &Held{Slot: t.FromSlot, Version: t.FromVersion, Config: t.FromConfig}
	rec.Trial = nil
	if err := n.writeRecord(rec); err != nil {
		return err
	}
	n.mark("committed %s (config %s) in slot %d", t.Version, t.Config, t.Slot)
	return n.prune()
}

// setAutoboot makes the firmware boot slot, and try the other.
func (n *Node) setAutoboot(slot int) error {
	dev, err := n.Partition(layout.AutobootPartition)
	if err != nil {
		return err
	}
	return n.writeFAT(dev, func(f FAT) error {
		return f.WriteFile(layout.AutobootFile, []byte(layout.Autoboot(slot, layout.OtherSlot(slot))))
	})
}

// settle ends, in a normal boot, a trial that is still on record.
func (n *Node) settle(rec Record) error {
	t := rec.Trial
	if t == nil {
		return nil
	}
	committed, _, err := n.Slots()
	if err != nil {
		return err
	}
	if committed == t.Slot && n.Boot.Version == t.Version && n.Boot.Config == t.Config {
		// The commit was written; its record was not (a power cut).
		rec.Last = &Outcome{Version: t.Version, Config: t.Config, Result: "committed", At: time.Now().UTC()}
		rec.Previous = &Held{Slot: t.FromSlot, Version: t.FromVersion, Config: t.FromConfig}
	} else {
		why := t.Failed
		if why == "" {
			why = fmt.Sprintf("its trial did not finish: a kernel panic, a hang or a power cut before its health check passed (the node booted %s again)", n.Boot.Version)
		}
		rec.Last = &Outcome{Version: t.Version, Config: t.Config, Result: "rolled back", Reason: why, At: time.Now().UTC()}
		n.mark("%s rolled back: %s", t.Version, why)
	}
	rec.Trial = nil
	return n.writeRecord(rec)
}

// Rollback goes back by hand to the version committed before this one
// (or to version, one still on the node): it writes that version into the
// other boot slot unless the slot holds it, commits the slot and reboots.
// An armed trial that has not booted yet is cancelled.
func (n *Node) Rollback(ctx context.Context, version string, noReboot bool) error {
	rec, err := n.ReadRecord()
	if err != nil {
		return err
	}
	if rec.Trial != nil && n.Boot.Trial {
		return errors.New("a trial boot of " + rec.Trial.Version + " is being checked: wait for it to commit or roll back")
	}
	committed, other, cv, cc, err := n.Committed()
	if err != nil {
		return err
	}
	cancelled := rec.Trial != nil
	if t := rec.Trial; t != nil {
		if err := n.disarm(); err != nil {
			return err
		}
		rec.Trial = nil
		rec.Last = &Outcome{Version: t.Version, Config: t.Config, Result: "cancelled", Reason: "by hand (k3os rollback) before its trial boot", At: time.Now().UTC()}
		if err := n.writeRecord(rec); err != nil {
			return err
		}
		n.say("rollback: the armed trial of %s is cancelled", t.Version)
	}
	target := Held{Version: version, Config: cc}
	if version == "" {
		if rec.Previous == nil {
			if cancelled {
				return nil
			}
			return errors.New("nothing to go back to: this node has committed no upgrade")
		}
		target = *rec.Previous
	}
	if target.Version == cv && target.Config == cc {
		return errors.New("the node already runs " + cv)
	}
	if _, err := os.Stat(n.path(layout.SystemDir, target.Version, bundle.RootFS)); err != nil {
		return fmt.Errorf("version %s is no longer on the node", target.Version)
	}
	if _, err := os.Stat(n.path(layout.NodeConfigDir, target.Config+".yaml")); err != nil && target.Config != layout.CardConfig {
		target.Config = cc // its config is gone; keep the running one
	}
	if ov, oc, err := n.SlotHolds(other); err != nil {
		return err
	} else if ov != target.Version || oc != target.Config {
		n.mark("writing slot %d", other)
		if err := n.writeSlot(other, target.Version, target.Config); err != nil {
			return fmt.Errorf("writing boot slot %d: %w", other, err)
		}
	}
	n.mark("rolling back from %s to %s", cv, target.Version)
	if err := n.setAutoboot(other); err != nil {
		return err
	}
	rec.Previous = &Held{Slot: committed, Version: cv, Config: cc}
	rec.Last = &Outcome{Version: target.Version, Config: target.Config, Result: "rolled back", Reason: "by hand (k3os rollback), from " + cv, At: time.Now().UTC()}
	if err := n.writeRecord(rec); err != nil {
		return err
	}
	n.say("rollback: slot %d (%s) is committed", other, target.Version)
	if noReboot {
		return nil
	}
	return n.Reboot("")
}

// disarm takes back a try-once boot asked for the next reboot.
func (n *Node) disarm() error {
	if err := os.Remove(n.RebootParam); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Status is what the node runs and keeps.
type Status struct {
	Running struct {
		Version, Config, Kernel string
		Slot                    int
		Trial                   bool
	}
	Committed, Other Held
	Record           Record
}

// Held is what a boot slot holds.
type Held struct {
	Slot            int
	Version, Config string
}

// Status reads what the node runs, what its slots hold and its record.
func (n *Node) Status() (Status, error) {
	var s Status
	s.Running.Version, s.Running.Config, s.Running.Kernel = n.Boot.Version, n.Boot.Config, n.Boot.Kernel
	s.Running.Slot, s.Running.Trial = n.Boot.Slot, n.Boot.Trial
	committed, other, err := n.Slots()
	if err != nil {
		return s, err
	}
	for _, h := range []*Held{{Slot: committed}, {Slot: other}} {
		if h.Version, h.Config, err = n.SlotHolds(h.Slot); err != nil {
			return s, err
		}
		if h.Slot == committed {
			s.Committed = *h
		} else {
			s.Other = *h
		}
	}
	s.Record, err = n.ReadRecord()
	return s, err
}
