package plan

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

type namedEngine struct{}

func (namedEngine) Name() string { return "test" }
func (namedEngine) Run(context.Context, *step.Step, map[string]string, string, io.Writer) error {
	panic("the plan test builds nothing")
}

func realOptions(flavour, k3s string) Options {
	project, _ := filepath.Abs("../..")
	return Options{Project: project, Version: "0.0.0-test", Flavour: flavour, K3s: k3s, K3sImages: settings.K3sRelease, Mirror: "http://deb.debian.org/debian"}
}

// twoClusters are two config directories that differ in one node's file.
func twoClusters(t *testing.T) (a, b string) {
	a, b = t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(a, "default.yaml"), []byte("hostname: a\n"), 0o600)
	os.WriteFile(filepath.Join(b, "default.yaml"), []byte("hostname: b\n"), 0o600)
	return a, b
}

// The real plan of every flavour: every step validates, names are unique,
// and a config-only change alters the image step's key and nothing else.
func TestRealPlan(t *testing.T) {
	a, b := twoClusters(t)
	trust := t.TempDir()
	for _, flavour := range KernelFlavours {
		for _, k3s := range []string{settings.K3sRelease, settings.K3sNone} {
			t.Run(flavour+"/"+k3s, func(t *testing.T) {
				p, err := New(realOptions(flavour, k3s))
				if err != nil {
					t.Fatal(err)
				}
				r := &run.Runner{Engine: namedEngine{}, Project: p.Project, Cache: t.TempDir(), Log: logrus.New()}
				keys := map[string]string{}
				names := map[string]bool{}
				for _, s := range p.Steps(a, trust) {
					if err := s.Validate(); err != nil {
						t.Error(err)
					}
					if names[s.Name] {
						t.Errorf("two steps named %s", s.Name)
					}
					names[s.Name] = true
					k, err := r.Key(s)
					if err != nil {
						t.Fatal(err)
					}
					keys[s.Name] = k
				}
				for _, want := range []string{"gomod", "agent", "rootfs-base", "rootfs", "kernel-" + flavour, "boot-" + flavour, "image-" + flavour} {
					if !names[want] {
						t.Errorf("no step %s in %v", want, names)
					}
				}
				r2 := &run.Runner{Engine: namedEngine{}, Project: p.Project, Cache: t.TempDir(), Log: logrus.New()}
				for _, s := range p.Steps(b, trust) {
					k, err := r2.Key(s)
					if err != nil {
						t.Fatal(err)
					}
					if changed := k != keys[s.Name]; changed != (s.Name == "image-"+flavour) {
						t.Errorf("a config-only change: step %s changed key: %v", s.Name, changed)
					}
				}
			})
		}
	}
}

// The image steps of two config directories are two steps.
func TestImageStepsByContent(t *testing.T) {
	a, b := twoClusters(t)
	p, err := New(realOptions(settings.KernelDebian, settings.K3sNone))
	if err != nil {
		t.Fatal(err)
	}
	if p.Image(a, a, "").ID() == p.Image(b, a, "").ID() {
		t.Error("the images of two config directories are one step")
	}
	if p.Image(a, a, "").ID() != p.Image(a, a, "").ID() {
		t.Error("the image of one config directory is two steps")
	}
}

// New fails on a broken lock, before anything runs, naming the file.
func TestNewFailsOnLocks(t *testing.T) {
	o := realOptions(settings.KernelDebian, settings.K3sNone)
	o.Project = t.TempDir()
	if _, err := New(o); err == nil {
		t.Error("a project without locks gave a plan")
	}
	o = realOptions("sorce", settings.K3sNone)
	if _, err := New(o); err == nil {
		t.Error("an unknown flavour gave a plan")
	}
}
