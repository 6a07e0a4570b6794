// Package durable writes files that survive a power cut whole: the old
// file or the new one, never a part (the node's state partition and its
// FAT boot files).
package durable

import (
	"os"
	"path/filepath"
	"strconv"
)

// WriteFile writes a file through a synced temporary file and a rename,
// then syncs its directory. Missing directories are made 0700.
func WriteFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp-" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(p))
}

// SyncDir syncs a directory: the names in it, after a rename or a removal.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
