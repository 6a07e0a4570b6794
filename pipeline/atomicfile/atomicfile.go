// Package atomicfile writes files so that readers never see a partial
// one: through a temporary file in the same directory and a rename.
package atomicfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// WriteFile writes a file through a temporary file in the same
// directory and a rename, so readers never see a partial file.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return Write(path, mode, bytes.NewReader(data))
}

// Copy copies a file, keeping its mode, atomically.
func Copy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	return Write(dst, fi.Mode().Perm(), in)
}

// Write writes what r yields to path atomically.
func Write(path string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
