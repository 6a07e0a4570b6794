package ci

import (
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
)

// CacheRoot is where built steps, tools roots and downloads are kept:
// $K3OS_CACHE, else $XDG_CACHE_HOME/k3os-rpi4, else ~/.cache/k3os-rpi4.
func CacheRoot() string {
	if d := os.Getenv("K3OS_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "k3os-rpi4")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "k3os-rpi4-cache")
	}
	return filepath.Join(home, ".cache", "k3os-rpi4")
}

// NewLogger returns the build's structured logger: info lines for what
// starts and ends, debug lines with verbose set.
func NewLogger(verbose bool) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: false, FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	if verbose {
		l.SetLevel(logrus.DebugLevel)
	}
	return l
}

// Terminal returns stderr when it is an interactive terminal (for live
// progress lines), else nil.
func Terminal() *os.File {
	fi, err := os.Stderr.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 || os.Getenv("CI") != "" {
		return nil
	}
	return os.Stderr
}
