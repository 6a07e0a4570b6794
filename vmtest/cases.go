package vmtest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/k3os-rpi/k3os-rpi4/diskimage"
	"github.com/k3os-rpi/k3os-rpi4/layout"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// NodeByMAC boots the node whose MAC has a config file, checks everything
// that config asked for, powers it off and boots the same disk again.
func (s *Suite) NodeByMAC(ctx context.Context, c *Case) error {
	node := c.Node(NodeMAC).Config
	m, err := s.machine(c.Name, NodeMAC, StaticIP)
	if err != nil {
		return err
	}
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	if !strings.Contains(m.Console(), "config "+NodeMAC+".yaml") {
		return fmt.Errorf("the initramfs did not pick %s.yaml; console tail:\n%s", NodeMAC, m.Tail(30))
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	defer sess.Close()
	m.Mark("sshd")
	if err := s.checkNode(ctx, m, sess, node); err != nil {
		return err
	}
	if s.K3s {
		s.memoryInUse(m, sess, "after boot, k3s starting")
	} else {
		s.memoryInUse(m, sess, "after boot, no k3s")
	}
	s.saveBootChain(m, sess)
	// k3s first when the image carries it: it runs the containerd that
	// the container check then uses.
	var skip skipError
	switch err := s.k3sMissing(&Case{NeedsK3s: true}); {
	case errors.As(err, &skip):
		s.logf("the k3s stage skipped: %s", skip)
	case err != nil:
		return err
	default:
		if err := s.checkK3s(ctx, m, sess, node.Hostname); err != nil {
			return err
		}
	}
	if err := s.checkContainer(sess); err != nil {
		return err
	}
	s.record(m, "first boot")
	// State that must survive a reboot.
	if _, err := sess.Run("sudo sh -c 'echo kept > /var/lib/k3os-test-marker'"); err != nil {
		return err
	}
	hostKey := sess.HostKey
	keys, err := sess.Run("cat ~/.ssh/authorized_keys")
	if err != nil {
		return err
	}
	sess.Run("sudo systemctl poweroff")
	sess.Close()
	if err := m.Wait(90 * time.Second); err != nil {
		return fmt.Errorf("poweroff: %w", err)
	}

	s.logf("second boot of the same disk")
	if err := s.boot(ctx, m, false); err != nil {
		return err
	}
	sess2, err := s.login(ctx, m)
	if err != nil {
		return fmt.Errorf("second boot: %w", err)
	}
	defer sess2.Close()
	m.Mark("sshd")
	if sess2.HostKey != hostKey {
		return fmt.Errorf("second boot: the SSH host key changed (%s, was %s): host keys must persist", sess2.HostKey, hostKey)
	}
	for _, c := range []struct{ what, cmd, want string }{
		{"state persists", "cat /var/lib/k3os-test-marker", "kept"},
		{"config re-applied", "hostname", node.Hostname},
		{"authorized_keys unchanged", "cat ~/.ssh/authorized_keys", keys},
		{"every step ok again", "sudo k3os-agent status >/dev/null && echo ok", "ok"},
	} {
		if err := check(sess2, "second boot: "+c.what, c.cmd, c.want); err != nil {
			return err
		}
	}
	// k3s comes back from the state it keeps on the card, as after a
	// Pi's power cut.
	if s.K3s {
		if err := s.checkK3s(ctx, m, sess2, node.Hostname); err != nil {
			return fmt.Errorf("second boot: %w", err)
		}
	}
	s.record(m, "second boot")
	return nil
}

// saveBootChain keeps systemd's view of the boot in the machine's
// directory: what held up the SSH login, the slowest units, the journal.
func (s *Suite) saveBootChain(m *Machine, sess *Session) {
	keepOutputs(m, sess, map[string]string{
		"boot-chain.txt": "systemd-analyze critical-chain --no-pager ssh.service; echo; systemd-analyze blame --no-pager | head -25",
		"journal.txt":    "sudo journalctl -b --no-pager -o short-monotonic",
	})
}

// checkNode asserts what the node's config asked for.
func (s *Suite) checkNode(ctx context.Context, m *Machine, sess *Session, node nodeconfig.Config) error {
	if _, err := Dial(ctx, m.SSHPort, "root", s.Key, 20*time.Second); err == nil {
		return fmt.Errorf("root could log in over SSH")
	}
	for _, c := range []struct{ what, cmd, want string }{
		{"the node chose its config", "hostname", node.Hostname},
		{"user rancher", "id -un; id -u", "rancher\n1000"},
		{"rancher has sudo", "sudo -n true && echo yes", "yes"},
		{"root has no password", "sudo passwd -S root | cut -d' ' -f2", "L"},
		{"root has no keys", "sudo sh -c 'test -e /root/.ssh/authorized_keys && echo keys || echo none'", "none"},
		{"sshd is key-only", "sudo sshd -T | grep -E '^(passwordauthentication|permitrootlogin) ' | sort", "passwordauthentication no\npermitrootlogin no"},
		{"write_files content and mode", "sudo stat -c '%a %U:%G' /etc/k3os-test/secret; sudo cat /etc/k3os-test/secret", "600 root:root\ns3cret"},
		{"write_files encoding and owner", "stat -c '%a %U' /etc/k3os-test/hello; cat /etc/k3os-test/hello", "644 rancher\nhello"},
		{"sysctl applied", "cat /proc/sys/vm/swappiness", node.K3OS.Sysctl["vm.swappiness"]},
		// Loaded, or built into a kernel without modules (KERNEL=reduced).
		{"module loaded", "{ grep -q '^ip_vs ' /proc/modules 2>/dev/null || grep -q '/ip_vs.ko$' /lib/modules/$(uname -r)/modules.builtin; } && echo yes", "yes"},
		{"static address", "ip -4 -o addr show scope global | awk '{print $4}'", StaticIP + "/24"},
		{"boot_cmd ran", "cat /run/k3os-test-boot", "boot_cmd ran"},
		{"cgroup memory controller", "grep -ow memory /sys/fs/cgroup/cgroup.controllers", "memory"},
		{"root filesystem read-only", "findmnt -no FSTYPE,OPTIONS / | cut -d, -f1", "squashfs ro"},
		// The disk is 2 GiB; the image's state partition some 150 MiB.
		{"state partition grown to the disk", "test $(df -B1 --output=size /k3os/state | tail -1) -gt 1500000000 && echo grown", "grown"},
		{"every apply step ok", "sudo k3os-agent status >/dev/null && echo ok", "ok"},
	} {
		if err := check(sess, c.what, c.cmd, c.want); err != nil {
			return err
		}
	}
	// run_cmd waits for network-online.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := check(sess, "run_cmd ran", "cat /run/k3os-test-run 2>/dev/null", "run_cmd ran"); err == nil {
			break
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(2 * time.Second)
	}
	return nil
}

// testImage is an OCI image built here, with no registry: the agent
// binary, whose `version` the container prints.
const testImage = "k3os.test/agent:1"

func (s *Suite) checkContainer(sess *Session) error {
	if s.AgentBinary == "" {
		return fmt.Errorf("no agent binary to build the test container from")
	}
	img, err := agentImage(s.AgentBinary)
	if err != nil {
		return err
	}
	if _, err := sess.RunInput("cat > /tmp/agent-image.tar", bytes.NewReader(img)); err != nil {
		return err
	}
	// Without k3s the image's containerd is Debian's, which no node starts
	// at boot: the test does, to show the root runs containers all the same.
	if err := check(sess, "containerd answers", "{ test -e /usr/local/bin/k3s || sudo systemctl start containerd; } && sudo ctr version >/dev/null && echo up", "up"); err != nil {
		return err
	}
	out, err := sess.Run("sudo ctr -n k3os-test images import /tmp/agent-image.tar >/dev/null && " +
		"sudo ctr -n k3os-test run --rm " + testImage + " vmtest /k3os-agent version")
	if err != nil {
		return fmt.Errorf("running a container: %w", err)
	}
	if out == "" {
		return fmt.Errorf("the container printed nothing")
	}
	s.logf("container ran: k3os-agent version %s", out)
	return nil
}

func agentImage(bin string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	tw.WriteHeader(&tar.Header{Name: "k3os-agent", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	img, err = withConfig(img, "arm64", v1.Config{Entrypoint: []string{"/k3os-agent"}})
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(testImage)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := tarball.Write(ref, img, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// DefaultConfig boots a node whose MAC has no file: it must fall back to
// default.yaml and name itself after its MAC.
func (s *Suite) DefaultConfig(ctx context.Context, c *Case) error {
	m, err := s.machine(c.Name, UnknownMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	if !strings.Contains(m.Console(), "config default.yaml") {
		return fmt.Errorf("the initramfs did not fall back to default.yaml; console tail:\n%s", m.Tail(30))
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	defer sess.Close()
	m.Mark("sshd")
	want := "k3os-" + strings.ReplaceAll(UnknownMAC, ":", "")[6:]
	if err := check(sess, "hostname from the MAC", "hostname", want); err != nil {
		return err
	}
	s.record(m, "default config")
	return nil
}

// USBDisk boots the card from a USB disk instead of virtio (a node on
// default.yaml): the initramfs must find the state partition there, and
// the node come up to SSH.
func (s *Suite) USBDisk(ctx context.Context, c *Case) error {
	m, err := s.machine(c.Name, USBMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	m.USBDisk = true
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	defer sess.Close()
	m.Mark("sshd")
	if err := check(sess, "the state partition is on the USB disk",
		"readlink -f /sys/class/block/$(basename $(findmnt -no SOURCE "+layout.StateMount+")) | grep -o /usb | head -1", "/usb"); err != nil {
		return err
	}
	s.record(m, "USB disk")
	return nil
}

// AgentSecrets boots the two-node cluster's agent alone, from a card that
// holds both nodes' configs: after its first boot the card keeps the
// agent's own config and nothing else, and neither its partitions nor its
// running system hold the server token anywhere.
func (s *Suite) AgentSecrets(ctx context.Context, c *Case) error {
	m, err := s.machine(c.Name, AgentMAC, slirpDHCPIP)
	if err != nil {
		return err
	}
	m.DiskSize = "768M" // the whole disk is read below
	// Its config puts its link address on eth0: it gets a link (with no
	// server at the other end), and the user network is eth1.
	ports, err := FreeUDPPorts(2)
	if err != nil {
		return err
	}
	m.Link = &Link{Port: ports[0], PeerPort: ports[1], UserMAC: "52:54:00:6b:34:13"}
	if err := s.boot(ctx, m, true); err != nil {
		return err
	}
	sess, err := s.login(ctx, m)
	if err != nil {
		return err
	}
	defer sess.Close()
	m.Mark("sshd")
	state := layout.StateMount
	if err := check(sess, "only the node's own config is on the card",
		"sudo find "+state+"/"+layout.ConfigDir+" "+state+"/"+layout.NodeConfigDir+" -type f 2>/dev/null; true",
		state+"/"+layout.NodeConfigDir+"/"+layout.CardConfig+".yaml"); err != nil {
		return err
	}
	if err := check(sess, "the agent joins with the agent token", "sudo cat /etc/rancher/k3s/token", s.Cluster.AgentToken); err != nil {
		return err
	}
	// Every byte of every partition, and every file of the running system.
	// The token comes on stdin, into a file the search leaves out: on a
	// command line, sudo would log it into the journal.
	grep := "t=$(mktemp) && cat > $t && sudo grep -rlsF -f $t / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude=$(basename $t); " +
		"for d in $(lsblk -lnpo NAME,TYPE | awk '$2==\"part\"{print $1}'); do sudo grep -qaF -f $t $d && echo $d; done; rm -f $t; true"
	out, err := sess.RunInput(grep, strings.NewReader(s.Cluster.ServerToken+"\n"))
	if err != nil {
		return err
	}
	if out != "" {
		return fmt.Errorf("the server token is on the agent's card or system: %s", out)
	}
	s.logf("the agent's card holds its own config only, and no server token on any partition or in any file")
	s.record(m, "agent secrets")
	return nil
}

// Raspi4bSmoke boots the image on QEMU's Raspberry Pi 4 model, with the
// SD image as its SD card, up to the initramfs mounting the state
// partition (the model has no ethernet, so that is as far as it can show).
func (s *Suite) Raspi4bSmoke(ctx context.Context, c *Case) error {
	m := &Machine{Name: c.Name, Board: "raspi4b", Dir: filepath.Join(s.Dir, c.Name), Image: s.PiImage, Run: s.Run}
	s.live = append(s.live, m)
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	info, err := diskimage.Inspect(m.Image)
	if err != nil {
		return err
	}
	if err := diskimage.ExtractBootFiles(m.Image, info.Boot, m.Dir, "Image", "initrd.img", "bcm2711-rpi-4-b.dtb"); err != nil {
		return err
	}
	// QEMU wires the SD card to the legacy SDHCI (the Wi-Fi slot on a real
	// Pi) whose power sequence it cannot drive: a QEMU-only DTB patch.
	// SD images must be a power of two in size.
	patch := `set -e; d=/tmp/vm/board.dtb; cp /tmp/vm/bcm2711-rpi-4-b.dtb $d
fdtput -d $d /soc/mmc@7e300000 mmc-pwrseq
fdtput -r $d /soc/mmc@7e300000/wifi@1
fdtput -t s $d /emmc2bus/mmc@7e340000 status disabled
fdtput -p -t s $d /aliases mmc0 /soc/mmc@7e300000
fdtput -r $d /soc/serial@7e201000/bluetooth
fdtput -t s $d /chosen stdout-path serial0:115200n8
qemu-img create -q -f qcow2 -b ` + m.guestImagePath() + ` -F raw /tmp/vm/sd.img 1G`
	if err := m.tool(ctx, "sh", "-c", patch); err != nil {
		return err
	}
	// The slot's own command line, with the model's two workarounds (its
	// clocks and interrupt controllers) and an early console.
	cmdline, err := virtCmdline(info.Slots[info.Boot].Cmdline)
	if err != nil {
		return err
	}
	cmdline += " clk_ignore_unused initcall_blacklist=brcmstb_l2_driver_init,brcmstb_i2c_driver_init earlycon=pl011,mmio32,0xfe201000"
	if err := m.Start(ctx, cmdline); err != nil {
		return err
	}
	if _, err := m.WaitFor(ctx, "initramfs", "k3os-init:", 3*time.Minute); err != nil {
		return err
	}
	if _, err := m.WaitFor(ctx, "state mounted", fmt.Sprintf("k3os-init: state partition /dev/mmcblk0p%d mounted", layout.StatePartition), 2*time.Minute); err != nil {
		return err
	}
	s.record(m, "raspi4b")
	return nil
}

// withConfig sets an image's platform and runtime config, keeping the
// layer digests its config records.
func withConfig(img v1.Image, arch string, c v1.Config) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Config = arch, "linux", c
	return mutate.ConfigFile(img, cf)
}
