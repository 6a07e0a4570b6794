package plan

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// k3sIn is the plan's k3s input for the option, with K3sDesc and
// K3sVersion set.
func k3sIn(project, opt string) (*Plan, *step.Input, error) {
	p := &Plan{Options: Options{Project: project, K3s: opt}}
	in, _, err := p.k3sInput()
	return p, in, err
}

const testK3sLock = `version v1.36.4+k3s1
url https://example.invalid/k3s-arm64
sha256 %s
`

// k3sProject makes a project with a k3s lock whose release sha256 is that
// of releaseContent, and a local k3s directory with the given files.
func k3sProject(t *testing.T, releaseContent string, files map[string]string) (project, dir string) {
	t.Helper()
	project = t.TempDir()
	os.MkdirAll(filepath.Join(project, "rootfs"), 0o755)
	rel := filepath.Join(t.TempDir(), "release")
	os.WriteFile(rel, []byte(releaseContent), 0o644)
	sum, _ := step.FileDigest(rel)
	os.WriteFile(filepath.Join(project, K3sLockFile), []byte(strings.Replace(testK3sLock, "%s", sum, 1)), 0o644)
	dir = filepath.Join(t.TempDir(), "k3s")
	os.MkdirAll(dir, 0o755)
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755)
	}
	return project, dir
}

func TestK3sLocalDirectoryMustBePinned(t *testing.T) {
	project, dir := k3sProject(t, "release", map[string]string{"k3s": "k3s", "cni": "cni", "containerd-shim-runc-v2": "shim"})
	opt := Options{Project: project, K3s: "file:" + dir}
	_, _, err := k3sIn(project, opt.K3s)
	if err == nil || !strings.Contains(err.Error(), "not pinned in rootfs/k3s.lock") || !strings.Contains(err.Error(), "go tool mage k3s:pin") {
		t.Fatalf("unpinned files: err = %v, want one naming the lock and the fix", err)
	}

	pinned, err := PinK3s(opt)
	if err != nil || len(pinned) != 3 {
		t.Fatalf("PinK3s = %v, %v", pinned, err)
	}
	lock, err := ReadK3sLock(filepath.Join(project, K3sLockFile))
	if err != nil || lock.Version != "v1.36.4+k3s1" || len(lock.Files) != 3 {
		t.Fatalf("lock after pinning = %+v, %v; want the release kept and 3 files", lock, err)
	}
	p, in, err := k3sIn(project, opt.K3s)
	if err != nil {
		t.Fatal(err)
	}
	desc := p.K3sDesc
	if len(in.Downloads) != 3 || in.Downloads[0].Name != "cni" || in.Downloads[2].Name != "k3s" {
		t.Errorf("downloads = %+v, want cni, containerd-shim-runc-v2, k3s", in.Downloads)
	}
	shim, _ := step.FileDigest(filepath.Join(dir, "containerd-shim-runc-v2"))
	if !strings.HasPrefix(desc, "local (version unknown): ") || !strings.Contains(desc, "containerd-shim-runc-v2 sha256:"+shim) {
		t.Errorf("description %q does not say what the image carries", desc)
	}

	// Pinning again replaces the pins instead of adding to them.
	if _, err := PinK3s(opt); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(project, K3sLockFile)); strings.Count(string(b), "file k3s ") != 1 {
		t.Errorf("pinned twice:\n%s", b)
	}

	// A changed file, a missing file and an extra file are refused.
	os.WriteFile(filepath.Join(dir, "cni"), []byte("other"), 0o755)
	if _, _, err := k3sIn(project, opt.K3s); err == nil || !strings.Contains(err.Error(), "but rootfs/k3s.lock pins") {
		t.Errorf("changed file: err = %v", err)
	}
	os.Remove(filepath.Join(dir, "cni"))
	if _, _, err := k3sIn(project, opt.K3s); err == nil || !strings.Contains(err.Error(), `pins file "cni", which K3S=file:`) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestK3sLocalFile(t *testing.T) {
	project, dir := k3sProject(t, "the release", map[string]string{"k3s-arm64": "the release", "custom": "custom"})

	// The release, downloaded elsewhere: its lock sha256 is enough.
	p, in, err := k3sIn(project, "file:"+filepath.Join(dir, "k3s-arm64"))
	if err != nil || p.K3sDesc != "release v1.36.4+k3s1 (local file)" || in.Downloads[0].Name != "k3s" {
		t.Fatalf("release copy: %+v %q %v", in, p.K3sDesc, err)
	}
	if p.K3sVersion != "v1.36.4+k3s1" {
		t.Errorf("K3sVersion of a release copy = %q", p.K3sVersion)
	}
	// Any other single file is k3s, and needs a pin.
	custom := "file:" + filepath.Join(dir, "custom")
	if _, _, err := k3sIn(project, custom); err == nil {
		t.Fatal("an unpinned custom k3s was accepted")
	}
	if _, err := PinK3s(Options{Project: project, K3s: custom}); err != nil {
		t.Fatal(err)
	}
	if p, _, err := k3sIn(project, custom); err != nil || !strings.HasPrefix(p.K3sDesc, "local ") {
		t.Fatalf("pinned custom k3s: %v", err)
	}

	// Names that cannot be pinned or installed are refused.
	os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o644)
	if _, _, err := k3sIn(project, "file:"+dir); err == nil || !strings.Contains(err.Error(), "plain names") {
		t.Errorf("dotfile: err = %v", err)
	}
	os.Remove(filepath.Join(dir, ".hidden"))

	// A directory must hold k3s.
	os.Remove(filepath.Join(dir, "custom"))
	if _, _, err := k3sIn(project, "file:"+dir); err == nil || !strings.Contains(err.Error(), "no file named k3s") {
		t.Errorf("directory without k3s: err = %v", err)
	}
	if _, _, err := k3sIn(project, "latest"); err == nil || !strings.Contains(err.Error(), "K3S=none") {
		t.Errorf("unknown K3S value: err = %v", err)
	}
}

func TestK3sRelease(t *testing.T) {
	project, _ := k3sProject(t, "x", nil)
	p, in, err := k3sIn(project, settings.K3sRelease)
	if err != nil || p.K3sDesc != "release v1.36.4+k3s1" || in.Downloads[0].URL != "https://example.invalid/k3s-arm64" || in.Hint == "" {
		t.Fatalf("release: %+v %q %v", in, p.K3sDesc, err)
	}
	if p.K3sVersion != "v1.36.4+k3s1" {
		t.Errorf("K3sVersion = %q", p.K3sVersion)
	}
	if p, in, err := k3sIn(project, settings.K3sNone); in != nil || p.K3sDesc != settings.K3sNone || err != nil || p.K3sVersion != "" {
		t.Errorf("none: %+v %q %v", in, p.K3sDesc, err)
	}
}

// The version of a local binary comes from its Go build information.
func TestK3sBinaryVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go binary")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/k3s\n\ngo 1.21\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "pkg", "version"), 0o755)
	os.WriteFile(filepath.Join(dir, "pkg", "version", "version.go"), []byte("package version\n\nvar Version = \"dev\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"example.com/k3s/pkg/version\"\n\nfunc main() { println(version.Version) }\n"), 0o644)
	cmd := exec.Command("go", "build", "-o", "k3s", "-ldflags", "-X example.com/k3s/pkg/version.Version=v1.21.2+k3s1 -w -s", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if v := K3sBinaryVersion(filepath.Join(dir, "k3s")); v != "v1.21.2+k3s1" {
		t.Errorf("K3sBinaryVersion = %q, want v1.21.2+k3s1", v)
	}
	if v := K3sBinaryVersion(filepath.Join(dir, "main.go")); v != "" {
		t.Errorf("K3sBinaryVersion of a source file = %q", v)
	}
}
