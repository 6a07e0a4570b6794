package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// Context is what the steps work from and on.
type Context struct {
	// Root is the node's root directory: "/" on the device.
	Root string
	// Config is the node's config, already merged and with its secrets
	// resolved at build time.
	Config *nodeconfig.Config
	// MAC of the ethernet port; it names a node whose config has no hostname.
	MAC string
	// Version of the image, put on the k3s node as the label k3os.io/version.
	Version string
	// K3sPresent tells whether the image holds k3s (see HasK3s); images
	// built with K3S=none get the k3s config but no service.
	K3sPresent bool
	// Runner runs programs; nil means ExecRunner.
	Runner CommandRunner
	// Log receives progress and warnings; nil discards them.
	Log logrus.FieldLogger
	// Chown changes the owner of an open file (named after its path on
	// the host); nil means fchown.
	Chown func(f *os.File, uid, gid int) error
	// KeyURL maps an ssh_authorized_keys reference (github:USER,
	// gitlab:USER, https URL) to the URL FetchKeys gets; nil means DefaultKeyURL.
	KeyURL func(ref string) (string, bool)
}

func (c *Context) cfg() *nodeconfig.Config {
	if c.Config == nil {
		return &nodeconfig.Config{}
	}
	return c.Config
}

func (c *Context) log() logrus.FieldLogger {
	if c.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		return l
	}
	return c.Log
}

func (c *Context) runner() CommandRunner {
	if c.Runner == nil {
		return ExecRunner{Log: c.log()}
	}
	return c.Runner
}

func (c *Context) chown(f *os.File, o owner) error {
	if c.Chown == nil {
		return f.Chown(o.uid, o.gid)
	}
	return c.Chown(f, o.uid, o.gid)
}

// run runs a program without input.
func (c *Context) run(ctx context.Context, name string, args ...string) error {
	return c.runner().Run(ctx, Command{Name: name, Args: args})
}

// K3sBinary is where the image holds k3s, when it does.
const K3sBinary = "/usr/local/bin/k3s"

// HasK3s tells whether the root at root holds the k3s binary.
func HasK3s(root string) bool {
	fi, err := os.Stat(filepath.Join(root, K3sBinary))
	return err == nil && fi.Mode().IsRegular()
}

// Step is one part of the apply.
type Step struct {
	Name string
	Run  func(ctx context.Context, c *Context) error
}

// Steps are the steps of Apply, in the order they run. write_files comes
// after the steps that generate files so that a node's own files win, and
// boot_cmd comes last.
func Steps() []Step {
	return []Step{
		{"hostname", hostnameStep},
		{"users", usersStep},
		{"ssh", sshStep},
		{"modules", modulesStep},
		{"sysctl", sysctlStep},
		{"dns_ntp", dnsNTPStep},
		{"network", networkStep},
		{"wifi", wifiStep},
		{"environment", environmentStep},
		{"k3s", k3sStep},
		{"images", imagesStep},
		{"write_files", writeFilesStep},
		{"boot_cmd", bootCmdStep},
	}
}

// StepResult is the outcome of one step.
type StepResult struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Err      string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Result is the outcome of Apply, step by step.
type Result struct {
	Started time.Time    `json:"started"`
	Steps   []StepResult `json:"steps"`
}

// Failed lists the steps that failed.
func (r Result) Failed() []StepResult {
	var f []StepResult
	for _, s := range r.Steps {
		if !s.OK {
			f = append(f, s)
		}
	}
	return f
}

// StatusFile is where Apply leaves its Result, as JSON.
const StatusFile = "/run/k3os/status.json"

// Apply runs every step in order. A failing step does not stop the others:
// a node with a bad sysctl should still get its network and its SSH keys.
// The result is also written to StatusFile.
func Apply(ctx context.Context, c *Context) Result {
	return runSteps(ctx, c, Steps())
}

func runSteps(ctx context.Context, c *Context, steps []Step) Result {
	r := Result{Started: time.Now()}
	for _, s := range steps {
		sc := *c
		sc.Log = c.log().WithField("step", s.Name)
		start := time.Now()
		err := runStep(ctx, &sc, s)
		res := StepResult{Name: s.Name, OK: err == nil, Duration: time.Since(start)}
		if err != nil {
			res.Err = err.Error()
			sc.Log.WithError(err).Error("step failed")
		} else {
			sc.Log.WithField("duration", res.Duration.Round(time.Millisecond)).Debug("step done")
		}
		r.Steps = append(r.Steps, res)
	}
	if err := writeStatus(c, r); err != nil {
		c.log().WithError(err).Warn("cannot write the status file")
	}
	return r
}

// runStep turns a panic into the step's error, so that one bug does not
// leave the node without the remaining steps.
func runStep(ctx context.Context, c *Context, s Step) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.Run(ctx, c)
}

func writeStatus(c *Context, r Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return c.writeFile(StatusFile, append(b, '\n'), 0o644, nil)
}

// Summary is one line on the outcome, for the console and the journal:
// "node k3s-1 configured: 8 steps ok, 1 failed (sysctl: ...)".
func Summary(r Result, hostname string) string {
	failed := r.Failed()
	s := fmt.Sprintf("node %s configured: %s ok", hostname, plural(len(r.Steps)-len(failed), "step"))
	if len(failed) == 0 {
		return s
	}
	msgs := make([]string, len(failed))
	for i, f := range failed {
		msgs[i] = f.Name + ": " + strings.ReplaceAll(f.Err, "\n", "; ")
	}
	return s + fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(msgs, "; "))
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
