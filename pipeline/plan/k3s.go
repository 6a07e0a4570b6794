package plan

import (
	"debug/buildinfo"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// K3sLockFile pins the k3s the image carries: the release downloaded by
// default, and the files of a local k3s (K3S=file:PATH).
const K3sLockFile = "rootfs/k3s.lock"

// K3sLock is rootfs/k3s.lock.
type K3sLock struct {
	Version string
	URL     string // of k3s-arm64
	SHA256  string
	// Files pins the files of a local k3s by name: k3s and what it needs
	// beside it when it is not the self-extracting release.
	Files map[string]string
	// ImagesURL and ImagesSHA256 pin the release's airgap images
	// (k3s-airgap-images-arm64.tar.zst); Images pins local image
	// tarballs (K3S_IMAGES=file:PATH) by name.
	ImagesURL, ImagesSHA256 string
	Images                  map[string]string
}

// ReadK3sLock reads "key value" lines (version, url, sha256, images-url,
// images-sha256) and "file NAME SHA256" and "image NAME SHA256" lines.
func ReadK3sLock(file string) (K3sLock, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return K3sLock{}, err
	}
	l := K3sLock{Files: map[string]string{}, Images: map[string]string{}}
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] == "file" || f[0] == "image" {
			if len(f) != 3 || len(f[2]) != 64 {
				return l, fmt.Errorf("%s:%d: want \"%s NAME SHA256\"", file, n+1, f[0])
			}
			if f[0] == "file" {
				l.Files[f[1]] = f[2]
			} else {
				l.Images[f[1]] = f[2]
			}
			continue
		}
		if len(f) != 2 {
			return l, fmt.Errorf("%s:%d: want \"key value\"", file, n+1)
		}
		switch f[0] {
		case "version":
			l.Version = f[1]
		case "url":
			l.URL = f[1]
		case "sha256":
			l.SHA256 = f[1]
		case "images-url":
			l.ImagesURL = f[1]
		case "images-sha256":
			l.ImagesSHA256 = f[1]
		default:
			return l, fmt.Errorf("%s:%d: unknown key %q (version, url, sha256, images-url, images-sha256, file, image)", file, n+1, f[0])
		}
	}
	if l.Version == "" || l.URL == "" || len(l.SHA256) != 64 {
		return l, fmt.Errorf("%s: needs version, url and a sha256", file)
	}
	return l, nil
}

// k3sInput turns the K3S option into the rootfs step's k3s input (files
// under /in/k3s/), and sets K3sDesc and K3sVersion:
//
//	K3S=release     the release pinned in rootfs/k3s.lock (download)
//	K3S=file:PATH   a local k3s: the release file itself, or a file or
//	                directory of files pinned in rootfs/k3s.lock
//	K3S=none        no k3s in the image
func (p *Plan) k3sInput() (*step.Input, K3sLock, error) {
	v := p.K3s
	if v == settings.K3sNone {
		p.K3sDesc = settings.K3sNone
		return nil, K3sLock{}, nil
	}
	lock, err := ReadK3sLock(p.file(K3sLockFile))
	if err != nil {
		return nil, lock, err
	}
	switch {
	case v == settings.K3sRelease:
		p.K3sDesc, p.K3sVersion = "release "+lock.Version, lock.Version
		return &step.Input{Name: "k3s", Downloads: []step.Download{{Name: "k3s", URL: lock.URL, SHA256: lock.SHA256}},
			Hint: "build offline with K3S=file:/path/to/k3s-arm64, or without k3s with K3S=none"}, lock, nil
	case strings.HasPrefix(v, "file:"):
		files, sums, err := p.localK3s(v)
		if err != nil {
			return nil, lock, err
		}
		in := &step.Input{Name: "k3s"}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			in.Downloads = append(in.Downloads, step.Download{Name: name, URL: "file:" + files[name], SHA256: sums[name]})
		}
		// A copy of the locked release needs no pin of its own.
		if lock.isRelease(sums) {
			p.K3sDesc, p.K3sVersion = "release "+lock.Version+" (local file)", lock.Version
			return in, lock, nil
		}
		if err := lock.checkFiles(v, files, sums); err != nil {
			return nil, lock, err
		}
		var parts []string
		for _, d := range in.Downloads {
			parts = append(parts, d.Name+" sha256:"+d.SHA256)
		}
		p.K3sVersion = K3sBinaryVersion(files["k3s"])
		version := p.K3sVersion
		if version == "" {
			version = "(version unknown)"
		}
		p.K3sDesc = "local " + version + ": " + strings.Join(parts, ", ")
		return in, lock, nil
	}
	return nil, lock, fmt.Errorf("K3S=%s: use K3S=release, K3S=none or K3S=file:PATH (a k3s binary, or a directory with k3s and what it needs)", v)
}

// checkFiles wants a local k3s's files to be exactly the lock's pins.
func (l K3sLock) checkFiles(opt string, files, sums map[string]string) error {
	return checkPins("K3S="+opt, "file", l.Files, files, sums)
}

// isRelease says whether a local k3s is a copy of the locked release.
func (l K3sLock) isRelease(sums map[string]string) bool {
	return len(sums) == 1 && sums["k3s"] == l.SHA256
}

// localK3s lists the files of K3S=file:PATH by name, with their sha256: a
// single file is k3s; a directory holds k3s and the files it needs beside
// it (for example containerd-shim-runc-v2 and the cni multicall binary).
func (p *Plan) localK3s(opt string) (files, sums map[string]string, err error) {
	path := strings.TrimPrefix(opt, "file:")
	if !filepath.IsAbs(path) {
		path = p.file(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("K3S=%s: %w", opt, err)
	}
	files = map[string]string{"k3s": path}
	if st.IsDir() {
		if files, err = k3sDirectory(opt, path); err != nil {
			return nil, nil, err
		}
	}
	sums = map[string]string{}
	for name, f := range files {
		if sums[name], err = step.FileDigest(f); err != nil {
			return nil, nil, err
		}
	}
	return files, sums, nil
}

// k3sDirectory lists a local k3s directory's files by name.
func k3sDirectory(opt, dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("K3S=%s: %w", opt, err)
	}
	files := map[string]string{}
	for _, e := range entries {
		f := filepath.Join(dir, e.Name())
		// The names become lock fields and installed file names.
		if strings.HasPrefix(e.Name(), ".") || strings.ContainsAny(e.Name(), " \t\n") {
			return nil, fmt.Errorf("K3S=%s: %q: the directory's files need plain names (no leading dot, no spaces)", opt, f)
		}
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("K3S=%s: %s is not a regular file; the directory holds k3s and its companion files only", opt, f)
		}
		files[e.Name()] = f
	}
	if files["k3s"] == "" {
		return nil, fmt.Errorf("K3S=%s: the directory has no file named k3s", opt)
	}
	return files, nil
}

// PinK3s writes the pins of K3S=file:PATH into rootfs/k3s.lock, keeping
// the release lines, and returns what it pinned.
func PinK3s(o Options) ([]string, error) {
	if !strings.HasPrefix(o.K3s, "file:") {
		return nil, fmt.Errorf("K3S=%s: pinning is for a local k3s, K3S=file:PATH", o.K3s)
	}
	p := &Plan{Options: o}
	files, sums, err := p.localK3s(o.K3s)
	if err != nil {
		return nil, err
	}
	version := K3sBinaryVersion(files["k3s"])
	return rewritePins(p.file(K3sLockFile), "file", "# local k3s", "# local k3s "+version+" (K3S=file:), pinned by go tool mage k3s:pin", sums)
}

var k3sVersionFlag = regexp.MustCompile(`/pkg/version\.Version=(v[0-9][^ '"]*)`)

// K3sBinaryVersion reads a k3s binary's version from the Go build
// information, where the -ldflags that set it are recorded (no need to
// run an arm64 binary); "" when it is not there.
func K3sBinaryVersion(path string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "-ldflags" {
			if m := k3sVersionFlag.FindStringSubmatch(s.Value); m != nil {
				return m[1]
			}
		}
	}
	return ""
}
