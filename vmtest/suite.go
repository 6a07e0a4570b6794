package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Suite boots one image through the cases.
type Suite struct {
	Run   Runner
	Dir   string // where each machine keeps its files and console log
	Image string
	// PiImage is booted on the raspi4b model: Image, or the same image with
	// a kernel that has the Pi's drivers.
	PiImage string
	Key     *Key
	// K3s says whether the image carries k3s (its k3os-release).
	K3s bool
	// AgentBinary is the arm64 agent, packed into the test container image.
	AgentBinary string
	// RunPostgres runs PostgreSQL's tools (the datastore case).
	RunPostgres Runner
	// Upgrades are the upgrade cases' versions and bundles (nil: none
	// built, the cases skip).
	Upgrades *Upgrades
	// Cluster is what the image's test configs were written from.
	Cluster Cluster
	// Cases are the names of the cases to run (all when empty); Select
	// checks them.
	Cases []string
	// Keep leaves a failed case's machines up until ctx ends.
	Keep bool
	// RequireK3s turns the k3s cases' skip into a failure.
	RequireK3s bool
	Out        io.Writer
	// Timings collects each case's stage times; Memory what nodes use
	// (MiB), by machine and moment.
	Timings map[string]map[string]time.Duration
	Memory  map[string]int

	live []*Machine // the machines of the running case
}

func (s *Suite) logf(format string, args ...any) { fmt.Fprintf(s.Out, format+"\n", args...) }

// Stage timeouts under TCG on 2 cores (each a generous bound).
const (
	toInit    = 90 * time.Second
	toApplied = 240 * time.Second
	toSSH     = 180 * time.Second
)

func (s *Suite) machine(name, mac, ip string) (*Machine, error) {
	ssh, err := FreePort()
	if err != nil {
		return nil, err
	}
	api, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &Machine{Name: name, Board: "virt", Dir: filepath.Join(s.Dir, name), Image: s.Image, MAC: mac,
		SSHPort: ssh, APIPort: api, GuestIP: ip, Run: s.Run}
	s.live = append(s.live, m)
	return m, nil
}

// login opens an SSH session as rancher on a booted machine; a failure
// carries the console's tail, where the reason usually is.
func (s *Suite) login(ctx context.Context, m *Machine) (*Session, error) {
	sess, err := Dial(ctx, m.SSHPort, "rancher", s.Key, toSSH)
	if err != nil {
		return nil, fmt.Errorf("%w; console tail:\n%s", err, m.Tail(30))
	}
	return sess, nil
}

// boot starts a machine and waits for the stages every boot goes through.
func (s *Suite) boot(ctx context.Context, m *Machine, fresh bool) error {
	if fresh {
		size := m.DiskSize
		if size == "" {
			size = "2G"
		}
		if err := m.PrepareDisk(ctx, size); err != nil {
			return err
		}
	}
	if err := m.Start(ctx, ""); err != nil {
		return err
	}
	if _, err := m.WaitFor(ctx, "initramfs", "k3os-init:", toInit); err != nil {
		return err
	}
	if _, err := m.WaitFor(ctx, "state mounted", "k3os-init: state partition", toInit); err != nil {
		return err
	}
	if _, err := m.WaitFor(ctx, "root switched", "k3os-init: switching to k3os", toInit); err != nil {
		return err
	}
	_, err := m.WaitFor(ctx, "config applied", " configured: ", toApplied)
	return err
}

// Select checks case names against the suite's cases and returns them in
// the order they run (every case when names is empty).
func Select(names []string) ([]string, error) {
	all := CaseNames()
	if len(names) == 0 {
		return all, nil
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("K3OS_VMTEST_CASES: no case %q (%s)", n, strings.Join(all, ", "))
		}
	}
	var out []string
	for _, n := range all {
		if slices.Contains(names, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// All runs the selected cases; it stops at the first failure, keeping logs in Dir.
func (s *Suite) All(ctx context.Context) error {
	s.Timings = map[string]map[string]time.Duration{}
	passed, skipped := 0, 0
	only, err := Select(s.Cases)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "ssh-key"), s.Key.PEM, 0o600); err != nil {
		return err
	}
	for _, c := range s.Cluster.Cases() {
		if !slices.Contains(only, c.Name) {
			s.logf("=== boot test %s: not in K3OS_VMTEST_CASES, not run", c.Name)
			continue
		}
		start := time.Now()
		s.logf("=== boot test %s", c.Name)
		err := s.k3sMissing(c)
		if err == nil {
			err = c.Run(s, ctx, c)
		}
		var skip skipError
		isSkip := errors.As(err, &skip)
		if err != nil && !isSkip && s.Keep {
			for _, m := range s.live {
				s.logf("K3OS_VMTEST_KEEP: %s stays up until interrupted: ssh -i %s/ssh-key -p %d rancher@127.0.0.1", m.Name, s.Dir, m.SSHPort)
			}
			<-ctx.Done()
		}
		for _, m := range s.live {
			m.Stop()
		}
		s.live = nil
		if isSkip {
			s.logf("--- SKIP %s: %s", c.Name, skip)
			skipped++
			continue
		}
		if err != nil {
			s.logf("--- FAIL %s (%s)", c.Name, time.Since(start).Round(time.Second))
			return fmt.Errorf("boot test %s: %w (logs in %s)", c.Name, err, s.Dir)
		}
		s.logf("--- PASS %s (%s)", c.Name, time.Since(start).Round(time.Second))
		passed++
	}
	s.logf("boot test: %d passed, %d skipped, 0 failed", passed, skipped)
	return s.writeTimings()
}

func (s *Suite) record(m *Machine, label string) {
	marks := m.Marks()
	s.Timings[label] = marks
	names := make([]string, 0, len(marks))
	for k := range marks {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return marks[names[i]] < marks[names[j]] })
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "  %s %.1fs", n, marks[n].Seconds())
	}
	s.logf("%s boot times (from power-on):%s", label, b.String())
}

func (s *Suite) writeTimings() error {
	b, _ := json.MarshalIndent(s.Timings, "", "  ")
	if err := os.WriteFile(filepath.Join(s.Dir, "timings.json"), b, 0o644); err != nil {
		return err
	}
	b, _ = json.MarshalIndent(s.Memory, "", "  ")
	return os.WriteFile(filepath.Join(s.Dir, "memory.json"), b, 0o644)
}

// keepOutputs runs commands on a machine and keeps each one's output, and
// its error if it failed, in the named file of the machine's directory.
func keepOutputs(m *Machine, sess *Session, files map[string]string) {
	for file, cmd := range files {
		out, err := sess.Run(cmd)
		if err != nil {
			out += "\n" + err.Error()
		}
		os.WriteFile(filepath.Join(m.Dir, file), []byte(out+"\n"), 0o644)
	}
}

// memoryInUse records and prints what a node uses of its memory
// (MemTotal - MemAvailable), the figure of a lean node.
func (s *Suite) memoryInUse(m *Machine, sess *Session, label string) {
	out, err := sess.Run(`awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {printf "%d %d", (t-a)/1024, t/1024}' /proc/meminfo`)
	var used, total int
	if _, serr := fmt.Sscan(out, &used, &total); err != nil || serr != nil {
		return
	}
	s.logf("%s: %s: %d MiB of memory in use of %d MiB", m.Name, label, used, total)
	if s.Memory == nil {
		s.Memory = map[string]int{}
	}
	s.Memory[m.Name+": "+label] = used
}

// check runs a command over SSH and compares its output.
func check(sess *Session, what, cmd, want string) error {
	got, err := sess.Run(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got != want {
		return fmt.Errorf("%s: `%s` printed %q, want %q", what, cmd, got, want)
	}
	return nil
}
