package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// writeFilesStep writes the config's write_files. An entry that fails
// does not stop the others.
func writeFilesStep(ctx context.Context, c *Context) error {
	var errs []error
	for i, f := range c.cfg().WriteFiles {
		if err := writeEntry(c, f); err != nil {
			errs = append(errs, fmt.Errorf("write_files[%d] %s: %w", i, f.Path, err))
		}
	}
	return errors.Join(errs...)
}

func writeEntry(c *Context, f nodeconfig.File) error {
	if f.Path == "" {
		return errors.New("no path")
	}
	data, err := f.Decode()
	if err != nil {
		return err
	}
	m, err := nodeconfig.FileMode(f.Permissions)
	if err != nil {
		return err
	}
	own, err := c.lookupOwner(f.Owner)
	if err != nil {
		return err
	}
	return c.writeFile(f.Path, data, unixMode(m), &own)
}

// unixMode converts a chmod-style mode (04755) to Go's fs.FileMode, which
// keeps the setuid, setgid and sticky bits elsewhere.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
