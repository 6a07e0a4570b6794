package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/k3os-rpi/k3os-rpi4/bundle"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/rollout"
)

// The upgrade cases' nodes.
const (
	UpgradeMAC  = "52:54:00:6b:33:30"
	PowerCutMAC = "52:54:00:6b:33:31"
)

func (c Cluster) upgradeNode(mac, hostname string) Node {
	return Node{MAC: mac, Config: nodeconfig.Config{Hostname: hostname, SSHAuthorizedKeys: []string{c.publicKey()},
		K3OS: nodeconfig.K3OS{Token: "vmtest-token", K3sArgs: EmulationK3sArgs(c.K3sVersion, true)}}}
}

// Stage timeouts of the upgrade cases.
const (
	toRestart = 6 * time.Minute // an upgrade's staging and reboot, a panic's (panic=10)
	toCommit  = 12 * time.Minute
)

// booted is what the console says a boot ran: the system version of the
// boot slot, the kernel, the slot, whether it was a trial, and the
// version of the root's own agent (k3os-release's).
type booted struct {
	Version, Kernel, Root string
	Slot                  int
	Trial                 bool
}

var (
	switchLine  = regexp.MustCompile(`k3os-init: switching to k3os (\S+) \(kernel (\S+), slot (\d)(, a trial)?\)`)
	appliedLine = regexp.MustCompile(`k3os (\S+): node \S+ configured: `)
)

func bootedOf(console string) (booted, error) {
	var b booted
	sw := switchLine.FindAllStringSubmatch(console, -1)
	ap := appliedLine.FindAllStringSubmatch(console, -1)
	if len(sw) == 0 || len(ap) == 0 {
		return b, fmt.Errorf("the console names no version switched to and applied")
	}
	last := sw[len(sw)-1]
	b.Version, b.Kernel, b.Trial, b.Root = last[1], last[2], last[4] != "", ap[len(ap)-1][1]
	fmt.Sscan(last[3], &b.Slot)
	return b, nil
}

// complete checks that a boot ran one whole version: the slot's, its own
// kernel, its own root.
func (u *Upgrades) complete(b booted) error {
	kernels := map[string]string{u.V1: u.V1Kernel, u.V2: u.V2Kernel}
	want, ok := kernels[b.Version]
	switch {
	case !ok:
		return fmt.Errorf("booted %s, neither %s nor %s", b.Version, u.V1, u.V2)
	case b.Kernel != want:
		return fmt.Errorf("MIXED: version %s with kernel %s (its own is %s)", b.Version, b.Kernel, want)
	case b.Root != b.Version:
		return fmt.Errorf("MIXED: version %s with the root of %s", b.Version, b.Root)
	}
	return nil
}

// waitBooted waits for the boot under way until the config is applied
// and checks it ran one whole version: want ("" for v1 or v2), as a
// trial or not.
func (s *Suite) waitBooted(ctx context.Context, m *Machine, want string, trial bool) (booted, error) {
	if _, err := m.WaitFor(ctx, "config applied", " configured: ", toApplied); err != nil {
		return booted{}, err
	}
	b, err := bootedOf(m.Console())
	if err == nil {
		err = s.Upgrades.complete(b)
	}
	if err == nil && ((want != "" && b.Version != want) || b.Trial != trial) {
		err = fmt.Errorf("booted %s (trial %v), want %s (trial %v)", b.Version, b.Trial, want, trial)
	}
	if err != nil {
		return b, fmt.Errorf("%s: %w; console tail:\n%s", m.Name, err, m.Tail(30))
	}
	return b, nil
}

func (s *Suite) needUpgrades() error {
	if s.Upgrades == nil {
		return skipError("the boot test built no upgrade bundle")
	}
	return nil
}

// fingerprint is what an upgrade may change on a node: the state's
// system versions, configs, upgrade record and keys, and the autoboot
// partition and the other boot slot, byte for byte.
const fingerprint = `sudo sh -c 'cd /k3os/state && find k3os/system k3os/config k3os/upgrade k3os/trust -xdev -printf "%p %s %m\n" 2>/dev/null | sort | sha256sum; sha256sum /dev/vda1 /dev/vda2 /dev/vda3 | cut -d" " -f1'`

// Upgrade is the upgrade case: on one node, bad bundles refused with
// nothing changed (d); v1 to v2 through the rollout (a); a v3 whose kernel
// panics and a v4 whose health fails, each back on v2 unattended (b); and
// a rollback by hand to v1.
func (s *Suite) Upgrade(ctx context.Context, c *Case) error {
	if err := s.needUpgrades(); err != nil {
		return err
	}
	u := s.Upgrades
	m, err := s.machine(c.Name, UpgradeMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	if _, err := s.waitBooted(ctx, m, u.V1, false); err != nil {
		return err
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	if _, err := sess.Run("sudo sh -c 'echo kept > /var/lib/k3os-test-marker'"); err != nil {
		return err
	}
	hostKey := sess.HostKey
	machineID, err := sess.Run("cat /etc/machine-id")
	if err != nil {
		return err
	}

	// (d) Bad bundles: each refused with its reason, nothing changed.
	bad, err := u.badBundles(m.Dir)
	if err != nil {
		return err
	}
	before, err := sess.Run(fingerprint)
	if err != nil {
		return err
	}
	for _, b := range bad {
		data, err := os.ReadFile(b.file)
		if err != nil {
			return err
		}
		out, err := sess.RunInput("sudo k3os upgrade -", bytes.NewReader(data))
		if err == nil || !strings.Contains(err.Error(), b.refusal) {
			return fmt.Errorf("bundle %s: k3os upgrade said %q (%v), want a refusal saying %q", b.name, out, err, b.refusal)
		}
		after, ferr := sess.Run(fingerprint)
		if ferr != nil {
			return ferr
		}
		if after != before {
			return fmt.Errorf("bundle %s was refused, but the node changed:\nbefore %s\nafter %s", b.name, before, after)
		}
		s.logf("bundle %s refused: %s", b.name, refusalLine(err.Error()))
	}
	sess.Close()

	// (a) v1 to v2 through the rollout, as `go tool mage rollout` does it.
	fi, err := os.Stat(u.Bundle)
	if err != nil {
		return err
	}
	r := rollout.Rollout{
		Nodes:   []rollout.Node{{Name: UpgradeMAC, Hostname: c.Node(UpgradeMAC).Config.Hostname, Role: nodeconfig.RoleClusterInit, Bundle: u.Bundle}},
		Version: u.V2, Timeout: toCommit, Poll: 2 * time.Second, Out: s.Out,
		Exec: func(ctx context.Context, _ rollout.Node, stdin io.Reader, command string) (string, error) {
			sess, err := Dial(ctx, m.SSHPort, "rancher", s.Key, 10*time.Second)
			if err != nil {
				return "", err
			}
			defer sess.Close()
			out, err := sess.RunInput(command, stdin)
			if err != nil {
				return out + "\n" + err.Error(), err
			}
			return out, nil
		},
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	restarted := make(chan error, 1)
	go func() { restarted <- m.Restart(ctx, toRestart) }()
	select {
	case err := <-done:
		if err == nil {
			err = errors.New("the rollout ended before the node rebooted")
		}
		return fmt.Errorf("%w; console tail:\n%s", err, m.Tail(30))
	case err := <-restarted:
		if err != nil {
			return err
		}
	}
	down := time.Now()
	if _, err := s.waitBooted(ctx, m, u.V2, true); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return fmt.Errorf("%w; console tail:\n%s", err, m.Tail(30))
	}
	took := time.Since(start)
	sess, err = s.login(ctx, m)
	if err != nil {
		return err
	}
	defer func() { sess.Close() }()
	for _, c := range []struct{ what, cmd, want string }{
		{"the root is v2", ". /etc/k3os-release; echo $VERSION", u.V2},
		{"the kernel is v2's", "uname -r", u.V2Kernel},
		{"/var kept", "cat /var/lib/k3os-test-marker", "kept"},
		{"the machine id kept", "cat /etc/machine-id", machineID},
		{"the config kept", "hostname", c.Node(UpgradeMAC).Config.Hostname},
		{"committed", "k3os status | grep -c '^committed: " + u.V2 + ", config card, slot 3'", "1"},
	} {
		if err := check(sess, "after the upgrade: "+c.what, c.cmd, c.want); err != nil {
			return err
		}
	}
	if sess.HostKey != hostKey {
		return fmt.Errorf("after the upgrade the SSH host key changed")
	}
	m.Mark("upgrade committed")
	s.Timings["upgrade"] = map[string]time.Duration{"k3os upgrade to committed": took, "reboot to committed": time.Since(down)}
	s.logf("v1 -> v2: %s from `k3os upgrade` to committed and healthy (bundle %d MiB)", took.Round(time.Second), fi.Size()>>20)

	// (b) A v3 whose kernel panics, a v4 whose health fails.
	m2, members, err := u.members()
	if err != nil {
		return err
	}
	v3, v4 := u.V2+".3", u.V2+".4"
	panicBoot, err := bootAs(m.Dir, members[bundle.BootImage], u.V2, v3, true)
	if err != nil {
		return err
	}
	unhealthyBoot, err := bootAs(m.Dir, members[bundle.BootImage], u.V2, v4, false)
	if err != nil {
		return err
	}
	bad4 := c.Node(UpgradeMAC).Config
	bad4.K3OS.Sysctl = map[string]string{"kernel.k3os_vmtest_no_such_key": "1"}
	cfg4, err := nodeconfig.Marshal(&bad4)
	if err != nil {
		return err
	}
	for _, t := range []struct {
		version, file, why string
		boot, config       []byte
		trialSign          string
	}{
		{v3, "v3-panic.upgrade", "its trial did not finish", panicBoot, nil, "Kernel panic"},
		{v4, "v4-unhealthy.upgrade", "k3os_vmtest_no_such_key", unhealthyBoot, cfg4, "trial of " + v4 + " failed"},
	} {
		mm := m2
		mm.Version = t.version
		own := map[string][]byte{}
		for k, v := range members {
			own[k] = v
		}
		own[bundle.BootImage] = t.boot
		if t.config != nil {
			own[bundle.ConfigPrefix+UpgradeMAC+".yaml"] = t.config
		}
		file := filepath.Join(m.Dir, t.file)
		if err := craft(file, mm, own, u.Key); err != nil {
			return err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		out, err := sess.RunInput("sudo k3os upgrade -", bytes.NewReader(data))
		if err != nil && !strings.Contains(out, "rebooting to try") {
			return fmt.Errorf("k3os upgrade %s: %w", t.file, err)
		}
		sess.Close()
		if err := m.Restart(ctx, toRestart); err != nil {
			return err
		}
		if _, err := m.WaitFor(ctx, t.version+" fails", t.trialSign, toCommit); err != nil {
			return err
		}
		if err := m.Restart(ctx, toRestart); err != nil {
			return err
		}
		if _, err := s.waitBooted(ctx, m, u.V2, false); err != nil {
			return fmt.Errorf("after the failed %s: %w", t.version, err)
		}
		if sess, err = s.login(ctx, m); err != nil {
			return err
		}
		status, err := sess.Run("k3os status")
		if err != nil {
			return err
		}
		if !strings.Contains(status, "last:      "+t.version+" rolled back") || !strings.Contains(status, t.why) {
			return fmt.Errorf("after the failed %s, k3os status says:\n%s\nwant it rolled back because %q", t.version, status, t.why)
		}
		s.logf("%s failed its trial (%s) and the node is back on %s: %s", t.version, t.trialSign, u.V2, why(status))
	}

	// A rollback by hand, to v1.
	if out, err := sess.Run("sudo k3os rollback"); err != nil && !strings.Contains(out, "is committed") {
		return fmt.Errorf("k3os rollback: %w", err)
	}
	sess.Close()
	if err := m.Restart(ctx, toRestart); err != nil {
		return err
	}
	if _, err := s.waitBooted(ctx, m, u.V1, false); err != nil {
		return fmt.Errorf("after k3os rollback: %w", err)
	}
	if sess, err = s.login(ctx, m); err != nil {
		return err
	}
	return check(sess, "after the rollback", "k3os status | grep -c 'rolled back.*' ; cat /var/lib/k3os-test-marker", "1\nkept")
}

func why(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "why:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func refusalLine(s string) string {
	if i := strings.Index(s, "upgrade refused:"); i >= 0 {
		s = s[i:]
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
