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

	"github.com/k3os-rpi/k3os-rpi4/ci"
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
	// Tarball returns an OCI tarball of a toolchain's root (BaseImport).
	Tarball func(ctx context.Context, t ci.Toolchain) (string, error)
	Log     *logrus.Logger
	// Connect opens the client; tests replace it.
	Connect func(ctx context.Context, log io.Writer) (*dagger.Client, error)
	// Pins fix each toolchain's package versions (ci/toolchains.lock): the
	// registry base installs exactly the versions the host engine's tools
	// roots hold.
	Pins ci.ToolchainLock
	// Fetch, when set, runs the steps that need the network (the module
	// downloads, the locks): an engine without outside network gets their
	// pinned results as inputs instead.
	Fetch ci.Engine

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
func (e *Engine) Container(ctx context.Context, c *dagger.Client, t ci.Toolchain) (*dagger.Container, error) {
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
	for _, s := range t.Suites[1:] {
		fmt.Fprintf(&sources, "deb http://deb.debian.org/debian %s main\n", s)
	}
	pkgs := t.Packages
	if pins := e.Pins.Pins(t); pins != nil {
		pkgs = pins
	}
	install := fmt.Sprintf("printf '%s' > /etc/apt/sources.list.d/k3os.list && apt-get update -qq && "+
		"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades %s && rm -rf /var/lib/apt/lists/*",
		sources.String(), strings.Join(pkgs, " "))
	return c.Container(dagger.ContainerOpts{Platform: platform}).From(img).
		WithExec([]string{"sh", "-euc", install}), nil
}

// Run runs the step in its toolchain container and exports /out to outDir.
func (e *Engine) Run(ctx context.Context, s *ci.Step, inputs map[string]string, outDir string, log io.Writer) error {
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
		WithMountedDirectory(ci.OutDir, c.Directory()).
		WithMountedDirectory(ci.WorkDir, c.Directory()).
		WithWorkdir(ci.WorkDir)
	for _, in := range s.Inputs {
		path := inputs[in.Name]
		dst := ci.InDir + "/" + in.Name
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("input %s: %w", in.Name, err)
		}
		if !fi.IsDir() {
			ctr = ctr.WithMountedFile(dst, c.Host().File(path))
			continue
		}
		// A mounted host directory is a snapshot: what the step writes there
		// never reaches the host. (No ReadOnly option: engines before v0.21
		// reject it.)
		ctr = ctr.WithMountedDirectory(dst, c.Host().Directory(path, dagger.HostDirectoryOpts{Include: include(in.Include)}))
	}
	for _, name := range s.Caches {
		ctr = ctr.WithMountedCache(ci.CacheDir+"/"+name, c.CacheVolume("k3os-"+name))
	}
	for _, kv := range s.EnvList() {
		k, v, _ := strings.Cut(kv, "=")
		ctr = ctr.WithEnvVariable(k, v)
	}
	for _, cmd := range s.Commands {
		ctr = ctr.WithExec(cmd, dagger.ContainerWithExecOpts{InsecureRootCapabilities: s.Privileged})
	}
	if _, err := ctr.Directory(ci.OutDir).Export(ctx, outDir); err != nil {
		var ee *dagger.ExecError
		if errors.As(err, &ee) {
			fmt.Fprintf(log, "%s\n%s\n", ee.Stdout, ee.Stderr)
			return fmt.Errorf("%s: exit code %d", ci.ShortCommand(ee.Cmd), ee.ExitCode)
		}
		return err
	}
	return nil
}

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
