package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/agent/apply"
	"github.com/k3os-rpi/k3os-rpi4/agent/boot"
	"github.com/k3os-rpi/k3os-rpi4/agent/netcheck"
	"github.com/k3os-rpi/k3os-rpi4/agent/upgrade"
	"github.com/k3os-rpi/k3os-rpi4/layout"
)

// The k3os command (/usr/local/bin/k3os, a link to the agent) is what a
// person on the node runs.
const k3osUsage = `usage: k3os COMMAND
  upgrade [--no-reboot] [--allow-downgrade] [--health-timeout 10m] FILE|https://URL|-
  upgrade --channel https://URL     upgrade to the channel's latest version, if newer
  rollback [--no-reboot] [VERSION]  go back to the version committed before (or VERSION)
  status                            what the node runs, its boot slots and its last upgrade
  health [--boot]                   check the node's health once (--boot: settle or commit a trial, at boot)
  version                           print the running system version`

func k3os(ctx context.Context, log *logrus.Logger, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, k3osUsage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("k3os "+args[0], flag.ExitOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, k3osUsage) }
	noReboot := fs.Bool("no-reboot", false, "arm the change; the next reboot makes it")
	allowDowngrade := fs.Bool("allow-downgrade", false, "accept a version older than the committed one")
	channel := fs.String("channel", "", "a release channel's URL")
	healthTimeout := fs.Duration("health-timeout", upgrade.DefaultHealthTimeout, "how long the trial boot may take to be healthy")
	atBoot := fs.Bool("boot", false, "the boot's own check (k3os-health.service)")
	fs.Parse(args[1:])
	switch args[0] {
	case "status", "health":
		// They read the boot partitions and k3s's credentials, which are
		// root's: rancher has sudo, so they ask it.
		if os.Geteuid() != 0 {
			if sudo, err := exec.LookPath("sudo"); err == nil {
				return syscall.Exec(sudo, append([]string{"sudo", "-n", "/usr/local/bin/k3os"}, args...), os.Environ())
			}
		}
	}
	n, err := node0(log)
	if err != nil {
		return err
	}
	switch args[0] {
	case "upgrade":
		if err := needRoot(); err != nil {
			return err
		}
		if (*channel == "") == (fs.NArg() != 1) {
			return errors.New("k3os upgrade takes one FILE or URL, or --channel URL")
		}
		return cmdUpgrade(ctx, n, *channel, fs.Arg(0), upgrade.Options{AllowDowngrade: *allowDowngrade, NoReboot: *noReboot, HealthTimeout: *healthTimeout})
	case "rollback":
		if err := needRoot(); err != nil {
			return err
		}
		return n.Rollback(ctx, fs.Arg(0), *noReboot)
	case "status":
		if err := printStatus(os.Stdout, n); err != nil {
			return err
		}
		if apply.HasK3s("/") {
			fmt.Println(netcheck.Summary(netNode(n.Boot.Kernel).Check()))
		}
		return nil
	case "health":
		c, rec, err := node(log)
		if err != nil {
			return err
		}
		h := upgrade.Health{StatusFile: apply.StatusFile, SSH: "127.0.0.1:22", K3s: c.K3sPresent,
			Node: apply.Hostname(c.Config, c.MAC), Unconfigured: rec.Unconfigured, Run: output}
		if *atBoot {
			if c.K3sPresent {
				consoleLine("k3os: " + netcheck.Summary(netNode(rec.Kernel).Check()))
			}
			return n.AtBoot(ctx, h.Check)
		}
		if err := h.Check(ctx); err != nil {
			return fmt.Errorf("not healthy: %w", err)
		}
		fmt.Println("healthy")
		return nil
	case "version":
		fmt.Println(n.Boot.Version)
		return nil
	}
	fmt.Fprintln(os.Stderr, k3osUsage)
	os.Exit(2)
	return nil
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("this changes what the node boots: run it with sudo")
	}
	return nil
}

// node0 is the running node as the upgrade sees it.
func node0(log logrus.FieldLogger) (*upgrade.Node, error) {
	var rec boot.Record
	b, err := os.ReadFile(filepath.Join(boot.RunDir, "boot.json"))
	if err != nil {
		return nil, fmt.Errorf("no boot record (was the node booted by the k3os initramfs?): %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err
	}
	return &upgrade.Node{
		State:        layout.StateMount,
		Boot:         rec,
		Partition:    upgrade.PartitionOf("/sys/class/block", rec.StateDevice),
		Bootloader:   "/proc/device-tree/chosen/bootloader",
		KernelConfig: "/proc/config.gz",
		OpenFAT:      upgrade.MountFAT(filepath.Join(boot.RunDir, "fat")),
		Reboot:       reboot,
		RebootParam:  "/run/systemd/reboot-param",
		Out:          os.Stdout,
		Log:          log,
		Mark:         consoleMark(log),
	}, nil
}

// reboot asks systemd to reboot, with the command the kernel passes on to
// the firmware ("0 tryboot": boot the other slot once).
func reboot(arg string) error {
	args := []string{"reboot"}
	if arg != "" {
		args = append(args, "--reboot-argument="+arg)
	}
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// consoleMark shows an upgrade's phases on the console, where a person at
// the Pi's screen (and the boot test) sees them, and in the journal.
func consoleMark(log logrus.FieldLogger) func(string) {
	return func(phase string) {
		log.WithField("phase", phase).Debug("upgrade")
		consoleLine("k3os: upgrade: " + phase)
	}
}

func consoleLine(line string) {
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintln(con, line)
		con.Close()
	}
}

func netNode(kernel string) netcheck.Node {
	return netcheck.Node{Root: "/", Kernel: kernel, Legacy: netcheck.LegacyRules}
}

func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).Output()
}

func cmdUpgrade(ctx context.Context, n *upgrade.Node, channel, source string, o upgrade.Options) error {
	progress := func(done, total int64) {
		if total > 0 {
			fmt.Fprintf(os.Stderr, "downloaded %d of %d MiB (%d%%)\n", done>>20, total>>20, done*100/total)
		} else {
			fmt.Fprintf(os.Stderr, "downloaded %d MiB\n", done>>20)
		}
	}
	file := source
	var err error
	switch {
	case channel != "":
		file, err = n.FetchChannel(ctx, upgrade.Client(), channel, o.AllowDowngrade, progress)
		if err != nil || file == "" {
			return err
		}
	case strings.Contains(source, "://"):
		if file, err = n.Fetch(ctx, upgrade.Client(), source, progress); err != nil {
			return err
		}
	}
	if source == "-" { // a rollout streams the bundle over SSH
		return n.Upgrade(ctx, os.Stdin, o)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	err = n.Upgrade(ctx, f, o)
	f.Close()
	if file != source {
		os.Remove(file) // a download: staged, or refused for good
	}
	return err
}

func printStatus(w io.Writer, n *upgrade.Node) error {
	s, err := n.Status()
	if err != nil {
		return err
	}
	r := s.Running
	trial := ""
	switch {
	case r.Trial && s.Record.Trial == nil && s.Committed.Slot == r.Slot:
		trial = " (tried once, and committed)"
	case r.Trial:
		trial = " (TRIAL: not committed yet)"
	}
	fmt.Fprintf(w, "running:   %s, config %s, kernel %s, slot %d%s\n", r.Version, r.Config, r.Kernel, r.Slot, trial)
	fmt.Fprintf(w, "committed: %s, config %s, slot %d\n", orNone(s.Committed.Version), s.Committed.Config, s.Committed.Slot)
	fmt.Fprintf(w, "other:     %s, config %s, slot %d\n", orNone(s.Other.Version), s.Other.Config, s.Other.Slot)
	if p := s.Record.Previous; p != nil {
		fmt.Fprintf(w, "previous:  %s, config %s (k3os rollback goes back to it)\n", p.Version, p.Config)
	}
	if t := s.Record.Trial; t != nil {
		fmt.Fprintf(w, "trial:     %s, config %s, slot %d, armed %s\n", t.Version, t.Config, t.Slot, t.Armed.Format(time.RFC3339))
	}
	if l := s.Record.Last; l != nil {
		fmt.Fprintf(w, "last:      %s %s (config %s) at %s\n", l.Version, l.Result, l.Config, l.At.Format(time.RFC3339))
		if l.Reason != "" {
			fmt.Fprintf(w, "           why: %s\n", l.Reason)
		}
	}
	return nil
}

func orNone(v string) string {
	if v == "" {
		return "(empty)"
	}
	return v
}
