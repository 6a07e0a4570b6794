// Package dagger runs pipeline steps through a Dagger engine: each step's
// toolchain becomes a container, its inputs host directories, its caches
// cache volumes, and its /out is exported back to the host.
package dagger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"dagger.io/dagger"
	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// DebianImages pins the base image of each suite by digest (Docker Hub's
// multi-arch index), for users whose engine reaches a registry.
var DebianImages = map[string]string{
	"trixie": "docker.io/library/debian:trixie@sha256:35b8ff74ead4880f22090b617372daff0ccae742eb5674455d542bef71ef1999",
}

// Base says where a step's toolchain container comes from.
type Base string

const (
	// BaseRegistry pulls the pinned Debian image and installs the packages.
	BaseRegistry Base = "registry"
	// BaseImport imports the host engine's tools root as an OCI tarball:
	// no registry needed (air-gapped engines).
	BaseImport Base = "import"
)

// Engine is the Dagger engine.
type Engine struct {
	Base Base
	// Mirror is the Debian mirror the registry base installs from.
	Mirror string
	// Tarball returns an OCI tarball of a toolchain's root (BaseImport).
	Tarball func(ctx context.Context, t step.Toolchain) (string, error)
	Log     *logrus.Logger
	// Connect opens the client; tests replace it.
	Connect func(ctx context.Context, log io.Writer) (*dagger.Client, error)
	// Pins fix each toolchain's package versions: the registry base
	// installs exactly the versions the host engine's tools roots hold.
	Pins step.ToolchainLock
	// Fetch, when set, runs the steps that need the network (the module
	// downloads, the locks): an engine without outside network gets their
	// pinned results as inputs instead.
	Fetch step.Engine

	mu     sync.Mutex
	client *dagger.Client
	out    switchWriter
}

func (e *Engine) Name() string { return "dagger" }

// Close ends the engine session.
func (e *Engine) Close() error {
	if e.client == nil {
		return nil
	}
	return e.client.Close()
}

func (e *Engine) connect(ctx context.Context) (*dagger.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	connect := e.Connect
	if connect == nil {
		connect = func(ctx context.Context, log io.Writer) (*dagger.Client, error) {
			// The session lives as long as this context: not the step's.
			return dagger.Connect(context.WithoutCancel(ctx), dagger.WithLogOutput(log))
		}
	}
	c, err := connect(ctx, &e.out)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Dagger engine: %w", err)
	}
	e.client = c
	return c, nil
}

// Container returns the toolchain's container.
func (e *Engine) Container(ctx context.Context, c *dagger.Client, t step.Toolchain) (*dagger.Container, error) {
	platform := dagger.Platform("linux/" + t.Arch)
	if e.Base == BaseImport {
		if e.Tarball == nil {
			return nil, errors.New("dagger import base: no tools root tarball source")
		}
		tar, err := e.Tarball(ctx, t)
		if err != nil {
			return nil, err
		}
		return c.Container(dagger.ContainerOpts{Platform: platform}).Import(c.Host().File(tar)), nil
	}
	img, ok := DebianImages[t.Suites[0]]
	if !ok {
		return nil, fmt.Errorf("no pinned Debian image for suite %s", t.Suites[0])
	}
	var sources strings.Builder
	for _, s := range t.Suites {
		fmt.Fprintf(&sources, "deb %s %s main\n", e.Mirror, s)
	}
	pkgs := t.Packages
	if pins := e.Pins.Pins(t); pins != nil {
		pkgs = pins
	}
	// The image's own sources name Debian's mirror: they are replaced.
	install := fmt.Sprintf("rm -f /etc/apt/sources.list.d/* && printf '%s' > /etc/apt/sources.list.d/k3os.list && apt-get update -qq && "+
		"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades %s && rm -rf /var/lib/apt/lists/*",
		sources.String(), strings.Join(pkgs, " "))
	return c.Container(dagger.ContainerOpts{Platform: platform}).From(img).
		WithExec([]string{"sh", "-euc", install}), nil
}

// Run runs the step in its toolchain container and exports /out to outDir.
func (e *Engine) Run(ctx context.Context, s *step.Step, inputs map[string]string, outDir string, log io.Writer) error {
	if s.Network && e.Fetch != nil {
		fmt.Fprintf(log, "network step: run by the %s engine\n", e.Fetch.Name())
		return e.Fetch.Run(ctx, s, inputs, outDir, log)
	}
	c, err := e.connect(ctx)
	if err != nil {
		return err
	}
	e.out.Set(log)
	defer e.out.Set(nil)
	ctr, err := e.Container(ctx, c, s.Toolchain)
	if err != nil {
		return err
	}
	ctr = ctr.
		WithMountedDirectory(step.OutDir, c.Directory()).
		WithMountedDirectory(step.WorkDir, c.Directory()).
		WithWorkdir(step.WorkDir)
	for _, in := range s.Inputs {
		path := inputs[in.Name]
		dst := step.InDir + "/" + in.Name
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("input %s: %w", in.Name, err)
		}
		if !fi.IsDir() {
			ctr = ctr.WithMountedFile(dst, c.Host().File(path))
			continue
		}
		// A mounted host directory is a snapshot: what the step writes there
		// never reaches the host; confine makes it read-only. (No ReadOnly
		// option: engines before v0.21 reject it.)
		ctr = ctr.WithMountedDirectory(dst, c.Host().Directory(path, dagger.HostDirectoryOpts{Include: include(in.Include)}))
	}
	for _, name := range s.Caches {
		ctr = ctr.WithMountedCache(step.CacheDir+"/"+name, c.CacheVolume("k3os-"+name))
	}
	for _, kv := range s.EnvList() {
		k, v, _ := strings.Cut(kv, "=")
		ctr = ctr.WithEnvVariable(k, v)
	}
	for _, cmd := range s.Commands {
		ctr = ctr.WithExec(confine(s, cmd), dagger.ContainerWithExecOpts{InsecureRootCapabilities: true})
	}
	if _, err := ctr.Directory(step.OutDir).Export(ctx, outDir); err != nil {
		var ee *dagger.ExecError
		if errors.As(err, &ee) {
			fmt.Fprintf(log, "%s\n%s\n", ee.Stdout, ee.Stderr)
			return fmt.Errorf("%s: exit code %d", step.ShortCommand(ee.Cmd), ee.ExitCode)
		}
		return err
	}
	return nil
}

// confine runs a step's command the way the step contract says, which a
// container does not by itself: with its inputs read-only and, unless the
// step asks for the network, in a network namespace of its own that has
// nothing but loopback. Both need capabilities a Dagger container lacks
// (mount, unshare), so every step runs with the root capabilities the host
// engine gives its steps too. The remount is a perl mount(2) call: engines
// before v0.21 cannot mount read-only, the toolchains carry no mount(8),
// and perl is in every Debian root.
func confine(s *step.Step, cmd []string) []string {
	const remount = `open(M, "/proc/self/mounts") or die "mounts: $!\n";
while (<M>) {
	my @f = split;
	next unless $f[1] =~ m{^/in(/|$)};
	syscall($ENV{K3OS_SYS_MOUNT}, my $s = "none", $f[1], my $t = "", 0x1021, 0) == 0  # MS_REMOUNT|MS_BIND|MS_RDONLY
		or die "making input $f[1] read-only: $!\n";
}
delete $ENV{K3OS_SYS_MOUNT};
exec { $ARGV[0] } @ARGV or die "$ARGV[0]: $!\n";`
	argv := []string{"env", "K3OS_SYS_MOUNT=" + mountSyscall[s.Toolchain.Arch]}
	if !s.Network {
		argv = append(argv, "unshare", "--net", "--")
	}
	return append(append(argv, "perl", "-e", remount, "--"), cmd...)
}

// mountSyscall is mount(2)'s number by toolchain architecture.
var mountSyscall = map[string]string{"amd64": "165", "arm64": "40"}

// include turns Include entries into Dagger patterns (an entry and, if a
// directory, everything below it).
func include(entries []string) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e, e+"/**")
	}
	return out
}

// switchWriter sends the engine's log to the running step's log.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}
