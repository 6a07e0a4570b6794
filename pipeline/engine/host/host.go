// Package host runs pipeline steps on a Debian or Ubuntu machine without
// containers: each step's toolchain is a Debian root made once with
// mmdebstrap and cached, and the step's commands run inside it under
// bubblewrap, with only the step's inputs, outputs and caches mounted and no
// network unless the step asks. Outputs so depend on the pinned toolchain,
// not on the host's own packages (the design of mkosi's tools tree).
package host

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Engine is the host engine.
type Engine struct {
	// Cache holds tools roots (toolroots/) and cache volumes (volumes/).
	Cache string
	// Volumes, when set, holds the cache volumes instead (a benchmark's
	// cold build starts with an empty ccache).
	Volumes string
	// Mirror is the Debian mirror the tools roots come from.
	Mirror string
	Log    *logrus.Logger
	// Pins fix each toolchain's package versions; a toolchain without
	// pins gets what the mirror has (toolchains:lock records that).
	Pins step.ToolchainLock

	mu sync.Mutex
}

func (e *Engine) Name() string { return "host" }

// hostPackages are what the engine itself needs on the host, by command.
var hostPackages = map[string]string{"mmdebstrap": "mmdebstrap", "bwrap": "bubblewrap"}

// EnsurePrerequisites installs mmdebstrap and bubblewrap when they are
// missing (as root), or says the exact command to run. Nothing else comes
// from the host: every tool a step uses is in its toolchain's root.
func EnsurePrerequisites(ctx context.Context, log *logrus.Logger) error {
	var missing []string
	for cmd, pkg := range hostPackages {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	cmd := "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + strings.Join(missing, " ")
	if os.Getuid() != 0 {
		return fmt.Errorf("the host engine needs %s; run: sudo sh -c '%s'", strings.Join(missing, ", "), cmd)
	}
	log.WithField("packages", strings.Join(missing, " ")).Info("installing host prerequisites")
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("installing host prerequisites (%s): %v\n%s", cmd, err, tail(out))
	}
	return nil
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// ToolsRoot returns the toolchain's root, building it on first use.
func (e *Engine) ToolsRoot(ctx context.Context, t step.Toolchain, log io.Writer) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	include := t.Packages
	name := t.Key()
	pins := e.Pins.Pins(t)
	if pins != nil {
		// Exactly the locked set: a root of its own for each lock.
		include = pins
		name += "-" + step.Digest(strings.Join(pins, " "))[:8]
	}
	dir := filepath.Join(e.Cache, "toolroots", name)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+t.Key()+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	e.Log.WithFields(logrus.Fields{"toolchain": t.Key(), "packages": len(t.Packages)}).Info("building tools root")
	args := []string{"--mode=root", "--variant=apt", "--arch=" + t.Arch,
		"--include=" + strings.Join(include, ","), t.Suites[0], tmp}
	for _, s := range t.Suites {
		args = append(args, fmt.Sprintf("deb %s %s main", e.Mirror, s))
	}
	c := exec.CommandContext(ctx, "mmdebstrap", args...)
	c.Stdout, c.Stderr = log, log
	if err := c.Run(); err != nil {
		if pins != nil {
			return "", fmt.Errorf("building tools root %s with the pinned versions (has the mirror moved on? refresh them with go tool mage toolchains:lock): %w", t.Key(), err)
		}
		return "", fmt.Errorf("building tools root %s with mmdebstrap: %w", t.Key(), err)
	}
	// What the root holds, for the record (and the step's log).
	q := exec.CommandContext(ctx, "chroot", tmp, "dpkg-query", "-W", "-f=${Package} ${Version} ${Architecture}\\n")
	pk, err := q.Output()
	if err != nil {
		return "", fmt.Errorf("listing tools root packages: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".packages"), pk, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir) // an incomplete one from an interrupted run
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Run runs the step's commands in its tools root under bubblewrap.
func (e *Engine) Run(ctx context.Context, s *step.Step, inputs map[string]string, outDir string, log io.Writer) error {
	if err := EnsurePrerequisites(ctx, e.Log); err != nil {
		return err
	}
	root, err := e.ToolsRoot(ctx, s.Toolchain, log)
	if err != nil {
		return err
	}
	// Mount points in the (read-only) root; /in and /cache are tmpfs so
	// that each input and volume gets its own mount point below them.
	for _, d := range []string{step.InDir, step.OutDir, step.CacheDir, step.WorkDir, "/etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "k3os-work-"+s.Name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	args := []string{
		"--ro-bind", root, "/",
		"--proc", "/proc", "--dev", "/dev",
		"--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run",
		"--tmpfs", step.InDir, "--tmpfs", step.CacheDir,
		"--bind", work, step.WorkDir, "--bind", outDir, step.OutDir,
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
		"--hostname", "build", "--clearenv", "--chdir", step.WorkDir,
	}
	if !s.Network {
		args = append(args, "--unshare-net")
	} else {
		// The network as the host sees it: its resolver and its CAs (a
		// proxy in the way may sign with a CA only the host trusts).
		args = append(args, "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf",
			"--ro-bind", "/etc/ssl/certs", "/etc/ssl/certs")
	}
	if s.Privileged {
		// Full capabilities for mount and mknod (mmdebstrap --mode=root).
		args = append(args, "--cap-add", "ALL", "--dev-bind", "/dev", "/dev")
	}
	for _, in := range s.Inputs {
		dst := step.InDir + "/" + in.Name
		src := inputs[in.Name]
		if len(in.Include) == 0 {
			args = append(args, "--ro-bind", src, dst)
			continue
		}
		for _, inc := range in.Include {
			args = append(args, "--ro-bind", filepath.Join(src, inc), dst+"/"+inc)
		}
	}
	volumes := e.Volumes
	if volumes == "" {
		volumes = filepath.Join(e.Cache, "volumes")
	}
	for _, name := range s.Caches {
		vol := filepath.Join(volumes, name)
		if err := os.MkdirAll(vol, 0o755); err != nil {
			return err
		}
		args = append(args, "--bind", vol, step.CacheDir+"/"+name)
	}
	for _, kv := range s.EnvList() {
		k, v, _ := strings.Cut(kv, "=")
		args = append(args, "--setenv", k, v)
	}
	for _, cmd := range s.Commands {
		c := exec.CommandContext(ctx, "bwrap", append(append(args, "--"), cmd...)...)
		c.Stdout, c.Stderr = log, log
		fmt.Fprintf(log, "+ %s\n", strings.Join(cmd, " "))
		if err := c.Run(); err != nil {
			return fmt.Errorf("%s: %w", step.ShortCommand(cmd), err)
		}
	}
	return nil
}

// Command returns a command that runs argv in a toolchain's root on the
// host, for tools that are not build steps (QEMU in the boot test): the
// network is the host's, and binds maps host paths to paths below /tmp.
func (e *Engine) Command(ctx context.Context, t step.Toolchain, binds map[string]string, argv ...string) (*exec.Cmd, error) {
	if err := EnsurePrerequisites(ctx, e.Log); err != nil {
		return nil, err
	}
	root, err := e.ToolsRoot(ctx, t, io.Discard)
	if err != nil {
		return nil, err
	}
	args := []string{"--ro-bind", root, "/", "--proc", "/proc", "--dev-bind", "/dev", "/dev",
		"--tmpfs", "/tmp", "--tmpfs", "/run", "--die-with-parent",
		"--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"}
	for host, guest := range binds {
		args = append(args, "--bind", host, guest)
	}
	return exec.CommandContext(ctx, "bwrap", append(append(args, "--"), argv...)...), nil
}
