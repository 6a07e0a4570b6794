package plan

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/images"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// k3sImages makes the step that stages the images the version carries for
// k3s (K3S_IMAGES): the release's airgap images, local tarballs, or none.
// The step lists what each tarball holds (its manifest.json or
// index.json), for the image's manifest and SBOM.
func (p *Plan) k3sImages(lock K3sLock) (*step.Step, error) {
	v := p.K3sImages
	if p.K3s == settings.K3sNone || v == settings.K3sNone {
		return nil, nil
	}
	var dls []step.Download
	hint := ""
	switch {
	case v == settings.K3sRelease:
		if p.K3sVersion != lock.Version {
			return nil, fmt.Errorf("K3S_IMAGES=release pins the airgap images of k3s %s (%s), but the image carries %s: give its images with K3S_IMAGES=file:PATH, or none with K3S_IMAGES=none",
				lock.Version, K3sLockFile, p.K3sDesc)
		}
		if lock.ImagesURL == "" || len(lock.ImagesSHA256) != 64 {
			return nil, fmt.Errorf("%s pins no airgap images (images-url, images-sha256): add them, or set K3S_IMAGES=file:PATH or none", K3sLockFile)
		}
		dls = []step.Download{{Name: filepath.Base(lock.ImagesURL), URL: lock.ImagesURL, SHA256: lock.ImagesSHA256}}
		hint = "build offline with K3S_IMAGES=file:/path/to/k3s-airgap-images-arm64.tar.zst, or with nothing preloaded with K3S_IMAGES=none"
	case strings.HasPrefix(v, "file:"):
		files, sums, err := p.localImages(v)
		if err != nil {
			return nil, err
		}
		if err := checkPins("K3S_IMAGES="+v, "image", lock.Images, files, sums); err != nil {
			return nil, err
		}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			dls = append(dls, step.Download{Name: name, URL: "file:" + files[name], SHA256: sums[name]})
		}
	default:
		return nil, fmt.Errorf("K3S_IMAGES=%s: use release, none or file:PATH", v)
	}
	return &step.Step{
		Name:      "k3s-images",
		Toolchain: ImageToolchain,
		Inputs: []step.Input{
			{Name: "scripts", Path: "pipeline/scripts", Include: []string{"images.sh"}},
			{Name: "images", Downloads: dls, Hint: hint},
		},
		Commands: [][]string{{"sh", "/in/scripts/images.sh"}},
		Outputs:  []string{"images", "lists"},
		Check: func(out string) error {
			_, err := images.Staged(out)
			return err
		},
	}, nil
}

// localImages lists the tarballs of K3S_IMAGES=file:PATH (one file, or a
// directory of them) by name, with their sha256.
func (p *Plan) localImages(opt string) (files, sums map[string]string, err error) {
	path := strings.TrimPrefix(opt, "file:")
	if !filepath.IsAbs(path) {
		path = p.file(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("K3S_IMAGES=%s: %w", opt, err)
	}
	files = map[string]string{}
	if !st.IsDir() {
		files[filepath.Base(path)] = path
	} else {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			files[e.Name()] = filepath.Join(path, e.Name())
		}
	}
	sums = map[string]string{}
	for name, f := range files {
		if !images.IsTarball(name) || strings.ContainsAny(name, " \t\n") || strings.HasPrefix(name, ".") {
			return nil, nil, fmt.Errorf("K3S_IMAGES=%s: %s is not an image tarball k3s imports (a plain name ending %s)", opt, f, strings.Join(images.Suffixes, ", "))
		}
		if sums[name], err = step.FileDigest(f); err != nil {
			return nil, nil, err
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("K3S_IMAGES=%s: no image tarballs there", opt)
	}
	return files, sums, nil
}

// checkPins wants local files to be exactly the lock's pins of a kind.
func checkPins(opt, kind string, pins, files, sums map[string]string) error {
	fix := "if these are the files you mean, pin them: " + opt + " go tool mage k3s:pin"
	for _, name := range slices.Sorted(maps.Keys(files)) {
		switch pin, ok := pins[name]; {
		case !ok:
			return fmt.Errorf("%s (sha256 %s) is not pinned in %s; %s", files[name], sums[name], K3sLockFile, fix)
		case pin != sums[name]:
			return fmt.Errorf("%s has sha256 %s, but %s pins %s for %s %s; %s", files[name], sums[name], K3sLockFile, pin, kind, name, fix)
		}
	}
	for name := range pins {
		if _, ok := files[name]; !ok {
			return fmt.Errorf("%s pins %s %q, which %s lacks; %s", K3sLockFile, kind, name, opt, fix)
		}
	}
	return nil
}

// PinImages writes the pins of K3S_IMAGES=file:PATH into rootfs/k3s.lock,
// keeping every other line, and returns what it pinned.
func PinImages(o Options) ([]string, error) {
	p := &Plan{Options: o}
	_, sums, err := p.localImages(o.K3sImages)
	if err != nil {
		return nil, err
	}
	return rewritePins(p.file(K3sLockFile), "image", "# local images", "# local images (K3S_IMAGES=file:), pinned by go tool mage k3s:pin", sums)
}

// rewritePins replaces a lock's pins of a kind (and their comment) with
// sums, keeping every other line.
func rewritePins(lockFile, kind, commentPrefix, comment string, sums map[string]string) ([]string, error) {
	b, err := os.ReadFile(lockFile)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.HasPrefix(line, kind+" ") && !strings.HasPrefix(line, commentPrefix) {
			lines = append(lines, line)
		}
	}
	lines = append(lines, comment)
	var pinned []string
	for _, name := range slices.Sorted(maps.Keys(sums)) {
		lines = append(lines, kind+" "+name+" "+sums[name])
		pinned = append(pinned, kind+" "+name+" "+sums[name])
	}
	return pinned, atomicfile.WriteFile(lockFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
