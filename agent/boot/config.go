package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/k3os-rpi/k3os-rpi4/agent/durable"
	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// claimConfig returns the node's own config on the state partition
// mounted at state, "" when it has none: k3os/config/card.yaml once the
// card's first boot made it. Before that the card's config/ holds every
// node's file (one image serves the cluster): the one for this MAC, or
// default.yaml, is copied there, and then every file of config/ is
// overwritten with zeros and removed, so that the card keeps no other
// node's secrets (a freed block still holds what was written in it). The
// card then belongs to this Pi. picked names the card's file that was
// claimed ("" on later boots).
func claimConfig(state, mac string) (own, picked string, err error) {
	own = filepath.Join(state, layout.NodeConfigDir, layout.CardConfig+".yaml")
	card := filepath.Join(state, layout.ConfigDir)
	if _, err := os.Stat(own); err == nil {
		// A wipe that a power cut interrupted is finished now.
		return own, "", wipe(card)
	}
	if mac == "" {
		// No wired port found (yet): claim nothing, wipe nothing; the
		// next boot, with its driver, picks.
		return "", "", nil
	}
	picked = nodeconfig.FileFor(card, mac)
	if picked != "" {
		data, err := os.ReadFile(picked)
		if err != nil {
			return "", "", err
		}
		if err := durable.WriteFile(own, data, 0o600); err != nil {
			return "", "", err
		}
	} else {
		own = ""
	}
	return own, picked, wipe(card)
}

// wipe zeroes every file of dir, syncs, and removes dir.
func wipe(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() {
			errs = append(errs, zero(filepath.Join(dir, e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wiping the card's node configs: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(dir))
}

// zero overwrites a file's bytes in place with zeros and syncs it.
func zero(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(make([]byte, fi.Size()), 0); err != nil {
		return err
	}
	return f.Sync()
}
