package apply

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// header starts the files the agent owns.
const header = "# Written by k3os-agent at every boot from the node's config; edits are lost.\n"

// path is p, a path on the node, under c.Root. A relative p starts at /,
// and ".." cannot climb above the root.
func (c *Context) path(p string) string {
	return filepath.Join(c.Root, filepath.FromSlash(path.Clean("/"+p)))
}

type owner struct{ uid, gid int }

// writeFile writes data to p (a path on the node) atomically: through a
// temporary file in the same directory and a rename, so that no reader
// ever sees half a file. Missing parent directories are created 0755. A
// file that already holds data with this mode is not rewritten. When own
// is set the file gets that owner before it appears.
func (c *Context) writeFile(p string, data []byte, mode fs.FileMode, own *owner) error {
	full := c.path(p)
	if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Lstat(full); err == nil && fi.Mode() == mode {
			if own != nil {
				return c.chown(full, *own)
			}
			return nil
		}
	}
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(full)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = writeAll(f, data)
	// chown before chmod: changing the owner clears setuid and setgid bits.
	if err == nil && own != nil {
		err = c.chown(f.Name(), *own)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), full)
}

func writeAll(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// removeFile removes p (a path on the node) if it is there.
func (c *Context) removeFile(p string) error {
	// Absent is done, also on a read-only filesystem (where unlink says
	// EROFS before it says ENOENT).
	if _, err := os.Lstat(c.path(p)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err := os.Remove(c.path(p))
	if err == nil {
		c.log().Infof("removed %s", p)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// writeOrRemove writes p when data is set and removes it otherwise: for
// the files that exist only while the config asks for them.
func (c *Context) writeOrRemove(p string, data []byte, mode fs.FileMode) error {
	if data == nil {
		return c.removeFile(p)
	}
	return c.writeFile(p, data, mode, nil)
}

// mkdir makes directory p (a path on the node) with mode, even when it
// already existed; missing parents are made 0755.
func (c *Context) mkdir(p string, mode fs.FileMode) error {
	full := c.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(full, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(full, mode)
}

// exists tells whether p (a path on the node) exists.
func (c *Context) exists(p string) bool {
	_, err := os.Lstat(c.path(p))
	return err == nil
}
