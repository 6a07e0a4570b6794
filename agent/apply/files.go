package apply

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// header starts the files the agent owns.
const header = "# Written by k3os-agent at every boot from the node's config; edits are lost.\n"

// path is p, a path on the node, under c.Root. A relative p starts at /,
// and ".." cannot climb above the root. For reading only: writes go
// through openDir.
func (c *Context) path(p string) string {
	return filepath.Join(c.Root, filepath.FromSlash(path.Clean("/"+p)))
}

type owner struct{ uid, gid int }

// trusted tells whether only root can change a directory: then a symlink
// in it was made by root and may be followed (/lib -> usr/lib).
func trusted(dir *os.File) bool {
	var st unix.Stat_t
	if unix.Fstat(int(dir.Fd()), &st) != nil {
		return false
	}
	return st.Uid == 0 && st.Mode&0o022 == 0
}

// errSymlink says a write was refused because of a symlink.
var errSymlink = errors.New("a symlink in a directory that another user can write: refusing to follow it as root")

// openDir opens the directory p (a path on the node) under c.Root, making
// missing directories 0755 when create is set. The agent writes as root
// into trees that users can write (/home/rancher, write_files there): a
// symlink planted there must not send a root write elsewhere, so below
// the first directory that someone other than root may write, no symlink
// is followed (openat2 RESOLVE_NO_SYMLINKS); root's own symlinks in root's
// own directories (/lib -> usr/lib) are. Hand-written: no library walks a
// path with this rule.
func (c *Context) openDir(p string, create bool) (*os.File, error) {
	dir, err := os.OpenFile(c.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	for i := 0; i < len(parts); i++ {
		part := parts[i]
		if part == "" {
			continue
		}
		safe := trusted(dir)
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
		if safe {
			how.Resolve = 0 // may be root's symlink: the kernel resolves it
		}
		fd, err := unix.Openat2(int(dir.Fd()), part, &how)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(int(dir.Fd()), part, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				dir.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			i-- // open what was just made
			continue
		}
		if err != nil {
			dir.Close()
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
				return nil, fmt.Errorf("%s: %w", p, errSymlink)
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		dir.Close()
		dir = os.NewFile(uintptr(fd), c.path(path.Join(parts[:i+1]...)))
	}
	return dir, nil
}

// openFile opens the file name in dir for reading, not following a
// symlink.
func openFile(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path.Join(dir.Name(), name)), nil
}

var tmpSeq atomic.Int64

// writeFile writes data to p (a path on the node) atomically: through a
// temporary file in the same directory and a rename, so that no reader
// ever sees half a file. Missing parent directories are created 0755. A
// file that already holds data with this mode is not rewritten. When own
// is set the file gets that owner before it appears. The file's directory
// is reached as openDir says, and the rename replaces a symlink at p
// rather than writing through it.
func (c *Context) writeFile(p string, data []byte, mode fs.FileMode, own *owner) error {
	clean := path.Clean("/" + p)
	dir, err := c.openDir(path.Dir(clean), true)
	if err != nil {
		return err
	}
	defer dir.Close()
	base := path.Base(clean)
	if old, err := openFile(dir, base); err == nil {
		same := false
		if fi, err := old.Stat(); err == nil && fi.Mode() == mode {
			b, err := io.ReadAll(old)
			same = err == nil && bytes.Equal(b, data)
		}
		if same && own != nil {
			err = c.chown(old, *own)
		}
		old.Close()
		if same {
			return err
		}
	}
	tmp := "." + base + ".tmp-" + strconv.Itoa(os.Getpid()) + strconv.FormatInt(tmpSeq.Add(1), 10)
	fd, err := unix.Openat(int(dir.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), path.Join(dir.Name(), tmp))
	defer unix.Unlinkat(int(dir.Fd()), tmp, 0)
	err = writeAll(f, data)
	// chown before chmod: changing the owner clears setuid and setgid bits.
	if err == nil && own != nil {
		err = c.chown(f, *own)
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
	return unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), base)
}

func writeAll(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// removeFile removes p (a path on the node) if it is there.
func (c *Context) removeFile(p string) error {
	clean := path.Clean("/" + p)
	dir, err := c.openDir(path.Dir(clean), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	// Absent is done, also on a read-only filesystem (where unlink says
	// EROFS before it says ENOENT).
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), path.Base(clean), &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	}
	err = unix.Unlinkat(int(dir.Fd()), path.Base(clean), 0)
	if err == nil {
		c.log().Infof("removed %s", p)
	}
	if errors.Is(err, unix.ENOENT) {
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
// already existed, and with the owner own when set; missing parents are
// made 0755.
func (c *Context) mkdir(p string, mode fs.FileMode, own *owner) error {
	d, err := c.openDir(p, true)
	if err != nil {
		return err
	}
	defer d.Close()
	// An O_PATH descriptor cannot change modes: reopen the directory itself.
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), d.Name())
	defer f.Close()
	if own != nil {
		if err := c.chown(f, *own); err != nil {
			return err
		}
	}
	return f.Chmod(mode)
}

// exists tells whether p (a path on the node) exists.
func (c *Context) exists(p string) bool {
	_, err := os.Lstat(c.path(p))
	return err == nil
}
