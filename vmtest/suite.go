package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
)

// The test cluster: one node by MAC, and default.yaml for any other.
const (
	NodeMAC     = "52:54:00:6b:33:01"
	UnknownMAC  = "52:54:00:6b:33:99"
	NodeName    = "k3os-vmtest"
	StaticIP    = "10.0.2.20"
	slirpDHCPIP = "10.0.2.15"
)

// Cluster is the test cluster's config, written by Write: what the cases
// check for.
type Cluster struct {
	Key *Key
	// K3sVersion is the version of the k3s the image carries, which
	// decides what the nodes' k3s_args add for emulation (EmulationK3sArgs).
	K3sVersion string
	// PostgresPort is where the datastore case's PostgreSQL listens on the
	// host; the node reaches it through QEMU's user network.
	PostgresPort int
}

// Write writes the cluster's config directory: the node of the node-by-mac
// case, default.yaml for any other MAC, and the nodes of the k3s cases.
func (c Cluster) Write(dir string) error {
	node := fmt.Sprintf(`# the boot test's node, matched by MAC
hostname: %s
ssh_authorized_keys:
  - %s
write_files:
  - path: /etc/k3os-test/secret
    content: "s3cret\n"
    permissions: "0600"
  - path: etc/k3os-test/hello
    encoding: b64
    content: aGVsbG8K
    owner: rancher
boot_cmd:
  - echo boot_cmd ran > /run/k3os-test-boot
run_cmd:
  - echo run_cmd ran > /run/k3os-test-run
k3os:
  modules: [ip_vs]
  sysctl:
    vm.swappiness: 13
  dns_nameservers: [10.0.2.3]
  role: cluster-init
  token: vmtest-token
  labels:
    k3os.io/test: vmtest
  network:
    "en*":
      address: %s/24
      gateway: 10.0.2.2
%s`, NodeName, c.Key.PublicKey, StaticIP, c.k3sArgs(true))
	def := fmt.Sprintf(`# any other node: DHCP, named after its MAC
ssh_authorized_keys:
  - %s
k3os:
  token: vmtest-token
`, c.Key.PublicKey)
	files := map[string]string{NodeMAC: node, "default": def}
	maps.Copy(files, c.k3sNodes())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

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
	// RunPostgres runs PostgreSQL's tools (the datastore case), and
	// PostgresPort is the port the cluster's config points at.
	RunPostgres  Runner
	PostgresPort int
	Out          io.Writer
	// Timings collects each case's stage times.
	Timings map[string]map[string]time.Duration

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

// virtCmdline is the image's own command line with the console moved to
// the virt machine's serial port.
func virtCmdline(image string) (string, error) {
	info, err := diskimage.Inspect(image)
	if err != nil {
		return "", err
	}
	var out []string
	for _, f := range strings.Fields(info.Cmdline) {
		if !strings.HasPrefix(f, "console=") && f != "quiet" {
			out = append(out, f)
		}
	}
	if !strings.Contains(info.Cmdline, "cgroup_enable=memory") {
		return "", fmt.Errorf("%s: cmdline.txt lacks cgroup_enable=memory: %s", image, info.Cmdline)
	}
	return strings.Join(append(out, "console=ttyAMA0,115200"), " "), nil
}

// boot starts a machine and waits for the stages every boot goes through.
func (s *Suite) boot(ctx context.Context, m *Machine, fresh bool) error {
	if fresh {
		if err := m.PrepareDisk(ctx, "2G"); err != nil {
			return err
		}
		if err := diskimage.ExtractBootFiles(s.Image, m.Dir, "Image", "initrd.img"); err != nil {
			return err
		}
	}
	cmdline, err := virtCmdline(s.Image)
	if err != nil {
		return err
	}
	if err := m.Start(ctx, cmdline); err != nil {
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
	_, err = m.WaitFor(ctx, "config applied", " configured: ", toApplied)
	return err
}

// CaseNames are the suite's cases, in the order they run.
var CaseNames = []string{"node-by-mac", "default-config", "raspi4b-smoke", "k3s-two-nodes", "k3s-postgres"}

// SelectedCases returns the cases K3OS_VMTEST_CASES names (comma-separated),
// or all of them when it is unset; an unknown name is an error.
func SelectedCases() ([]string, error) {
	v := os.Getenv("K3OS_VMTEST_CASES")
	if v == "" {
		return CaseNames, nil
	}
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(CaseNames, name) {
			return nil, fmt.Errorf("K3OS_VMTEST_CASES: no case %q (%s)", name, strings.Join(CaseNames, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

// cases maps CaseNames to the cases.
func (s *Suite) cases() map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"node-by-mac":    s.NodeByMAC,
		"default-config": s.DefaultConfig,
		"raspi4b-smoke":  s.Raspi4bSmoke,
		"k3s-two-nodes":  s.TwoNodes,
		"k3s-postgres":   s.Postgres,
	}
}

// All runs the selected cases; it stops at the first failure, keeping logs in Dir.
func (s *Suite) All(ctx context.Context) error {
	s.Timings = map[string]map[string]time.Duration{}
	passed, skipped := 0, 0
	only, err := SelectedCases()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "ssh-key"), s.Key.PEM, 0o600); err != nil {
		return err
	}
	run := s.cases()
	for _, name := range CaseNames {
		if !slices.Contains(only, name) {
			s.logf("=== boot test %s: not in K3OS_VMTEST_CASES, not run", name)
			continue
		}
		start := time.Now()
		s.logf("=== boot test %s", name)
		err := run[name](ctx)
		var skip skipError
		isSkip := errors.As(err, &skip)
		if err != nil && !isSkip && os.Getenv("K3OS_VMTEST_KEEP") != "" {
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
			s.logf("--- SKIP %s: %s", name, skip)
			skipped++
			continue
		}
		if err != nil {
			s.logf("--- FAIL %s (%s)", name, time.Since(start).Round(time.Second))
			return fmt.Errorf("boot test %s: %w (logs in %s)", name, err, s.Dir)
		}
		s.logf("--- PASS %s (%s)", name, time.Since(start).Round(time.Second))
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
	return os.WriteFile(filepath.Join(s.Dir, "timings.json"), b, 0o644)
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
