// Command k3os-agent is the on-device agent of the image. As the
// initramfs's /init it finds the node's config by MAC and enters the
// read-only root; in the booted system it applies the config (a systemd
// unit, every boot), fetches SSH keys, runs run_cmd, grows the state
// partition, and reports status.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/agent/apply"
	"github.com/k3os-rpi/k3os-rpi4/agent/boot"
	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// version is set at build time (-X main.version=...).
var version = "dev"

const usage = `usage: k3os-agent COMMAND
  apply        apply the node's config (boot, every time)
  fetch-keys   fetch github:/gitlab:/https keys of ssh_authorized_keys and refresh authorized_keys
  run-cmd      run the config's run_cmd (once the network is online)
  grow         grow the state partition and its filesystem to the end of the disk
  status       show what the boot and the last apply did
  version      print the agent's version
As /init (PID 1 in the initramfs) it boots the node; as k3os (a link to it)
it upgrades the node, rolls it back and says what it runs (k3os help).`

func main() {
	if os.Getpid() == 1 && os.Args[0] == "/init" { // the initramfs, not a container
		console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
		if err != nil {
			console = os.Stderr
		}
		in := &boot.Init{Console: console}
		boot.Fail(console, in.Run())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true}) // journald stamps lines
	if filepath.Base(os.Args[0]) == "k3os" {
		if err := k3os(ctx, log, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "k3os:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "apply":
		err = cmdApply(ctx, log)
	case "fetch-keys":
		err = cmdFetchKeys(ctx, log)
	case "run-cmd":
		err = cmdRunCmd(ctx, log)
	case "grow":
		err = cmdGrow(ctx, log)
	case "status":
		err = cmdStatus()
	case "version":
		fmt.Println(version)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k3os-agent:", err)
		os.Exit(1)
	}
}

// node reads what the initramfs left in /run/k3os: the boot record and the
// node's config (absent on an unconfigured boot).
func node(log logrus.FieldLogger) (*apply.Context, boot.Record, error) {
	var rec boot.Record
	b, err := os.ReadFile(filepath.Join(boot.RunDir, "boot.json"))
	if err != nil {
		return nil, rec, fmt.Errorf("no boot record (was the node booted by the k3os initramfs?): %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, rec, err
	}
	c := &apply.Context{Root: "/", MAC: rec.MAC, Version: rec.Version, Log: log, K3sPresent: apply.HasK3s("/")}
	cfgFile := filepath.Join(boot.RunDir, "config.yaml")
	data, err := os.ReadFile(cfgFile)
	switch {
	case os.IsNotExist(err):
		log.Warnf("unconfigured boot: %s", rec.Unconfigured)
		c.Config = &nodeconfig.Config{}
	case err != nil:
		return nil, rec, err
	default:
		d, r := nodeconfig.Parse(rec.ConfigFile, data)
		if r.HasErrors() {
			return nil, rec, r.Err()
		}
		c.Config = &d.Config
	}
	return c, rec, nil
}

func cmdApply(ctx context.Context, log *logrus.Logger) error {
	c, rec, err := node(log)
	if err != nil {
		return err
	}
	res := apply.Apply(ctx, c)
	for _, s := range res.Steps {
		if s.OK {
			log.WithField("step", s.Name).Info("ok")
		} else {
			log.WithField("step", s.Name).Error(s.Err)
		}
	}
	summary := apply.Summary(res, apply.Hostname(c.Config, c.MAC))
	if rec.Unconfigured != "" {
		summary += " (UNCONFIGURED: " + rec.Unconfigured + ")"
	}
	log.Info(summary)
	consoleLine(fmt.Sprintf("k3os %s: %s", version, summary))
	return nil
}

func cmdFetchKeys(ctx context.Context, log *logrus.Logger) error {
	c, _, err := node(log)
	if err != nil {
		return err
	}
	return apply.FetchKeys(ctx, c, apply.SecureClient(), 10)
}

func cmdRunCmd(ctx context.Context, log *logrus.Logger) error {
	c, _, err := node(log)
	if err != nil {
		return err
	}
	return apply.RunCommands(ctx, c, "run_cmd", c.Config.RunCmd)
}

func cmdStatus() error {
	for _, f := range []string{"boot.json", "status.json"} {
		b, err := os.ReadFile(filepath.Join(boot.RunDir, f))
		if err != nil {
			return err
		}
		fmt.Printf("%s:\n%s\n", f, b)
	}
	var res apply.Result
	b, _ := os.ReadFile(apply.StatusFile)
	if json.Unmarshal(b, &res) == nil {
		if failed := res.Failed(); len(failed) > 0 {
			return fmt.Errorf("%d step(s) failed", len(failed))
		}
	}
	return nil
}

func cmdGrow(ctx context.Context, log *logrus.Logger) error {
	_, rec, err := node(log)
	if err != nil {
		return err
	}
	p, err := boot.Grow(ctx, rec.StateDevice, layout.StateMount)
	if err != nil {
		return err
	}
	if p.Grow {
		log.Infof("state partition %s grown by %d MiB", p.Part, p.FreeMiB)
	}
	return nil
}
