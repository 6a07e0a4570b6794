package apply

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func loadConfig(t *testing.T, name string) *nodeconfig.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	doc, r := nodeconfig.Parse(name, data)
	if r.HasErrors() {
		t.Fatalf("Parse(%s): %v", name, r)
	}
	if r := doc.Validate(); r.HasErrors() {
		t.Fatalf("Validate(%s): %v", name, r)
	}
	return &doc.Config
}

func stepNames(r Result, ok bool) []string {
	var names []string
	for _, s := range r.Steps {
		if s.OK == ok {
			names = append(names, s.Name)
		}
	}
	return names
}

func TestApplyIdempotent(t *testing.T) {
	n := newNode(t, loadConfig(t, "node.yaml"))
	n.K3sPresent = true
	r := Apply(context.Background(), n.Context)
	if failed := r.Failed(); len(failed) > 0 {
		t.Fatalf("Apply failed: %+v", failed)
	}
	first, firstCalls := n.snapshot(t), n.run.lines(n.Root)
	n.run.calls = nil
	r = Apply(context.Background(), n.Context)
	if failed := r.Failed(); len(failed) > 0 {
		t.Fatalf("second Apply failed: %+v", failed)
	}
	if diff := cmp.Diff(first, n.snapshot(t)); diff != "" {
		t.Errorf("files after a second Apply differ (-first +second):\n%s", diff)
	}
	// The host keys exist by then; everything else is done again.
	var want []string
	for _, c := range firstCalls {
		if !strings.HasPrefix(c, "ssh-keygen") {
			want = append(want, c)
		}
	}
	if diff := cmp.Diff(want, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands of a second Apply (-want +got):\n%s", diff)
	}
	for _, p := range []string{"/etc/hostname", "/etc/sudoers.d/rancher", "/etc/rancher/k3s/config.yaml",
		"/etc/systemd/network/10-k3os-eth0.network", "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf", "/opt/hello.sh"} {
		if !n.exists(p) {
			t.Errorf("Apply did not write %s", p)
		}
	}
}

func TestApplyIsolatesFailures(t *testing.T) {
	n := newNode(t, loadConfig(t, "node.yaml"))
	n.run.fail = func(c Command) error {
		if c.Name == "sysctl" {
			return errors.New("sysctl: permission denied")
		}
		return nil
	}
	r := Apply(context.Background(), n.Context)
	if got, want := stepNames(r, false), []string{"sysctl"}; !slices.Equal(got, want) {
		t.Errorf("failed steps = %v, want %v", got, want)
	}
	if got, want := stepNames(r, true), []string{"hostname", "users", "ssh", "modules", "dns_ntp", "network", "wifi", "environment", "k3s", "images", "write_files", "boot_cmd"}; !slices.Equal(got, want) {
		t.Errorf("ok steps = %v, want %v", got, want)
	}
	want := "node k3s-1 configured: 12 steps ok, 1 failed (sysctl: sysctl: permission denied)"
	if got := Summary(r, "k3s-1"); got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}

	var status Result
	if err := json.Unmarshal([]byte(n.read(t, StatusFile)), &status); err != nil {
		t.Fatalf("status file: %v", err)
	}
	if got, want := stepNames(status, false), []string{"sysctl"}; !slices.Equal(got, want) {
		t.Errorf("status file: failed steps = %v, want %v", got, want)
	}
	if status.Steps[4].Err != "sysctl: permission denied" {
		t.Errorf("status file: sysctl error = %q, want %q", status.Steps[4].Err, "sysctl: permission denied")
	}
}

func TestRunStepsRecoversPanics(t *testing.T) {
	n := newNode(t, nil)
	ran := false
	r := runSteps(context.Background(), n.Context, []Step{
		{"bad", func(context.Context, *Context) error { panic("boom") }},
		{"good", func(context.Context, *Context) error { ran = true; return nil }},
	})
	if !ran {
		t.Error("the step after a panicking one did not run")
	}
	if got := r.Steps[0]; got.OK || got.Err != "panic: boom" {
		t.Errorf("panicking step = %+v, want failed with %q", got, "panic: boom")
	}
}

func TestSummary(t *testing.T) {
	ok := StepResult{Name: "x", OK: true}
	tests := []struct {
		name  string
		steps []StepResult
		want  string
	}{
		{"all ok", []StepResult{ok, ok, ok}, "node n configured: 3 steps ok"},
		{"one", []StepResult{ok}, "node n configured: 1 step ok"},
		{"two failed", []StepResult{ok, {Name: "sysctl", Err: "bad"}, {Name: "wifi", Err: "a\nb"}},
			"node n configured: 1 step ok, 2 failed (sysctl: bad; wifi: a; b)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summary(Result{Steps: tt.steps}, "n"); got != tt.want {
				t.Errorf("Summary = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHasK3s(t *testing.T) {
	root := t.TempDir()
	if HasK3s(root) {
		t.Errorf("HasK3s(empty root) = true, want false")
	}
	writeTestFile(t, root, K3sBinary, "elf")
	if !HasK3s(root) {
		t.Errorf("HasK3s(root with k3s) = false, want true")
	}
}
