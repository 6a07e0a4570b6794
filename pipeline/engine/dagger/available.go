package dagger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cliVersion is the Dagger CLI the SDK would download for itself.
const cliVersion = "0.21.9"

// Env are the variables through which the Dagger SDK finds an engine; it
// reads them itself, Available checks them.
type Env struct {
	// SessionPort is DAGGER_SESSION_PORT (inside `dagger run`).
	SessionPort string
	// RunnerHost is _EXPERIMENTAL_DAGGER_RUNNER_HOST: a running engine.
	RunnerHost string
	// CLIBin is _EXPERIMENTAL_DAGGER_CLI_BIN: the CLI the SDK starts.
	CLIBin string
	// CacheHome is where the SDK keeps a CLI it downloaded.
	CacheHome string
}

// Available tells, within about two seconds and without starting anything,
// whether a Dagger engine can be had: a session of `dagger run`, an engine
// named by _EXPERIMENTAL_DAGGER_RUNNER_HOST, or a working container runtime
// for the CLI to start one in. It returns nil or an error that says what
// to install or set.
func Available(ctx context.Context, env Env) error {
	ctx, cancel := context.WithTimeout(ctx, 1800*time.Millisecond)
	defer cancel()
	if port := env.SessionPort; port != "" {
		if err := dial(ctx, "tcp", "127.0.0.1:"+port); err != nil {
			return fmt.Errorf("DAGGER_SESSION_PORT=%s, but nothing answers there: %v", port, err)
		}
		return nil
	}
	if err := cliAvailable(ctx, env); err != nil {
		return err
	}
	if rh := env.RunnerHost; rh != "" {
		return runnerReachable(ctx, rh)
	}
	for _, rt := range []string{"docker", "podman"} {
		if _, err := exec.LookPath(rt); err != nil {
			continue
		}
		if out, err := exec.CommandContext(ctx, rt, "info").CombinedOutput(); err == nil {
			return nil
		} else if ctx.Err() == nil {
			return fmt.Errorf("no Dagger engine: %s is installed but `%s info` failed (%s); start its daemon, "+
				"or set _EXPERIMENTAL_DAGGER_RUNNER_HOST to a running engine, or use ENGINE=host", rt, rt, firstLine(out))
		}
	}
	return errors.New("no Dagger engine: no container runtime (docker or podman) and no _EXPERIMENTAL_DAGGER_RUNNER_HOST; " +
		"install Docker (https://docs.docker.com/engine/install/), or set _EXPERIMENTAL_DAGGER_RUNNER_HOST=unix:///path/to/engine.sock " +
		"and _EXPERIMENTAL_DAGGER_CLI_BIN=/path/to/dagger, or use ENGINE=host")
}

// cliAvailable checks that the SDK will find a Dagger CLI: the one named by
// _EXPERIMENTAL_DAGGER_CLI_BIN, one in its cache, or its download site.
func cliAvailable(ctx context.Context, env Env) error {
	if bin := env.CLIBin; bin != "" {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("_EXPERIMENTAL_DAGGER_CLI_BIN=%s: %v", bin, err)
		}
		return nil
	}
	if p, err := exec.LookPath("dagger"); err == nil {
		// The SDK does not look on PATH, and takes its CLI only from the
		// environment.
		return fmt.Errorf("a dagger CLI is on PATH, but the SDK does not look there: set _EXPERIMENTAL_DAGGER_CLI_BIN=%s", p)
	}
	if _, err := os.Stat(filepath.Join(env.CacheHome, "dagger", "dagger-"+cliVersion)); env.CacheHome != "" && err == nil {
		return nil
	}
	if err := dial(ctx, "tcp", "dl.dagger.io:443"); err != nil {
		return fmt.Errorf("no Dagger CLI: none in _EXPERIMENTAL_DAGGER_CLI_BIN, and its download site cannot be reached (%v); "+
			"install the dagger CLI (https://docs.dagger.io/install) and name it in _EXPERIMENTAL_DAGGER_CLI_BIN, or use ENGINE=host", err)
	}
	return nil
}

func runnerReachable(ctx context.Context, rh string) error {
	u, err := url.Parse(rh)
	if err != nil {
		return fmt.Errorf("_EXPERIMENTAL_DAGGER_RUNNER_HOST=%s: %v", rh, err)
	}
	switch u.Scheme {
	case "unix":
		err = dial(ctx, "unix", u.Path)
	case "tcp":
		err = dial(ctx, "tcp", u.Host)
	case "docker-container", "podman-container":
		rt := strings.TrimSuffix(u.Scheme, "-container")
		if out, e := exec.CommandContext(ctx, rt, "inspect", u.Host).CombinedOutput(); e != nil {
			err = fmt.Errorf("%s inspect %s: %s", rt, u.Host, firstLine(out))
		}
	default:
		return nil // kube-pod://, ssh://...: the CLI will tell
	}
	if err != nil {
		return fmt.Errorf("_EXPERIMENTAL_DAGGER_RUNNER_HOST=%s does not answer: %v; start the engine or unset it", rh, err)
	}
	return nil
}

func dial(ctx context.Context, network, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
