// Package bench times what docs/benchmarks.md reports about builds.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/atomicfile"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/release"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/run"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
)

// Result is one timed build.
type Result struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note,omitempty"`
}

// Bench times what docs/benchmarks.md reports: the root filesystem from
// nothing (a fresh cache: tools root, downloads, packages, squashfs), the
// same again from the cache, and an image rebuild after a config-only
// change. newRunner returns a runner (with its engine) on a cache dir.
func Bench(ctx context.Context, p *plan.Plan, newRunner func(cache string) *run.Runner, cache, configDir string, env nodeconfig.Lookup, w io.Writer) ([]Result, error) {
	var out []Result
	timed := func(name, note string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r := Result{Name: name, Seconds: time.Since(start).Seconds(), Note: note}
		fmt.Fprintf(w, "%-40s %8.1f s  %s\n", r.Name, r.Seconds, r.Note)
		out = append(out, r)
		return nil
	}
	cold, err := os.MkdirTemp("", "k3os-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cold)
	rootfs := p.Rootfs
	var coldOut string
	if err := timed("rootfs, cold", "empty cache: tools root, downloads, packages, squashfs", func() error {
		coldOut, err = newRunner(cold).Build(ctx, rootfs)
		return err
	}); err != nil {
		return out, err
	}
	// The same lock gives the same bytes: the cold build against the one
	// in the regular cache (built earlier, elsewhere in time).
	warmOut, err := newRunner(cache).Build(ctx, rootfs)
	if err != nil {
		return out, err
	}
	a, _ := step.FileDigest(filepath.Join(coldOut, "rootfs.squashfs"))
	b, _ := step.FileDigest(filepath.Join(warmOut, "rootfs.squashfs"))
	if a != b || a == "" {
		return out, fmt.Errorf("rootfs.squashfs is not reproducible: %s (cold) vs %s (cache)", a, b)
	}
	fmt.Fprintf(w, "rootfs.squashfs sha256 %s in both builds\n", a)
	if err := timed("rootfs, cached", "same inputs again", func() error {
		_, err := newRunner(cold).Build(ctx, rootfs)
		return err
	}); err != nil {
		return out, err
	}
	// Config-only: the image of the warm cache, then one node's hostname changed.
	r := newRunner(cache)
	dist := filepath.Join(cold, "dist")
	if err := (release.Image{Plan: p, Runner: r, ConfigDir: configDir, Env: env, Out: io.Discard}).Build(ctx, dist); err != nil {
		return out, err
	}
	changed := filepath.Join(cold, "config")
	if err := os.CopyFS(changed, os.DirFS(configDir)); err != nil {
		return out, err
	}
	extra := filepath.Join(changed, "12:34:56:78:9a:bc.yaml")
	if err := os.WriteFile(extra, []byte("hostname: bench-node\nk3os:\n  role: agent\n  server_url: https://10.0.0.1:6443\n  token: bench\n"), 0o644); err != nil {
		return out, err
	}
	if err := timed("image, config-only change", "a node added; kernel, root and boot files cached", func() error {
		return release.Image{Plan: p, Runner: newRunner(cache), ConfigDir: changed, Env: env, Out: io.Discard}.Build(ctx, dist)
	}); err != nil {
		return out, err
	}
	return out, nil
}

// Write saves results as JSON.
func Write(file string, rs []Result) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(file, append(b, '\n'), 0o644)
}

// Kernels times a cold build of each plan's kernel (its config step and
// the kernel, from an empty step cache and an empty ccache; tools roots and
// downloads already there), one after the other in the same run, and
// counts the objects each compiles. newRunner returns a runner whose cache
// and cache volumes are the given directories; the kernels built are given
// to keep's cache where it has none.
func Kernels(ctx context.Context, plans []*plan.Plan, newRunner func(cache, volumes string) *run.Runner, keep *run.Runner, w io.Writer) ([]Result, error) {
	var out []Result
	for _, p := range plans {
		dir, err := os.MkdirTemp("", "k3os-bench-kernel-")
		if err != nil {
			return out, err
		}
		defer os.RemoveAll(dir)
		r := newRunner(filepath.Join(dir, "cache"), filepath.Join(dir, "volumes"))
		if err := r.Prefetch(ctx, p.Kernel); err != nil {
			return out, err
		}
		start := time.Now()
		kout, err := r.Build(ctx, p.Kernel)
		if err != nil {
			return out, err
		}
		took := time.Since(start).Seconds()
		objects, err := os.ReadFile(filepath.Join(kout, "objects"))
		if err != nil {
			return out, err
		}
		if err := r.Give(keep, p.Kernel); err != nil {
			return out, err
		}
		res := Result{Name: "kernel " + p.Flavour + ", cold", Seconds: took,
			Note: strings.TrimSpace(string(objects)) + " objects; empty step cache and ccache"}
		fmt.Fprintf(w, "%-40s %8.1f s  %s\n", res.Name, res.Seconds, res.Note)
		out = append(out, res)
	}
	if len(out) == 2 {
		fmt.Fprintf(w, "%s / %s: %.2f\n", out[1].Name, out[0].Name, out[1].Seconds/out[0].Seconds)
	}
	return out, nil
}
