// Package vmtest boots built images in QEMU and checks them as a user
// would: it reads the serial console for each boot stage with a timeout,
// logs in over SSH with a throwaway key and asserts what the node's config
// asked for. No expect scripts: the console is a Go reader and SSH is
// golang.org/x/crypto/ssh.
package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Runner builds the command that runs a QEMU tool: argv is run with
// each host path of binds visible at its guest path (below /tmp).
type Runner func(ctx context.Context, binds map[string]string, argv ...string) (*exec.Cmd, error)

// Machine is one QEMU virtual machine booting an image.
type Machine struct {
	Name string
	// Board is "virt" (network, SSH) or "raspi4b" (the Pi 4 model, SD card).
	Board string
	// Dir holds the machine's files: boot files, disk overlay, console log.
	Dir string
	// Image is the SD-card image; the machine writes to an overlay on it.
	Image string
	MAC   string
	// SSHPort and APIPort are host loopback ports forwarded to the guest's
	// 22 and 6443 (virt); GuestIP is where they go.
	SSHPort, APIPort int
	GuestIP          string
	// Link, when set, is a private network between machines, like the
	// switch of a Pi cluster: it is the machine's first interface (eth0,
	// whose MAC picks its config), and the forwarded user network its
	// second (eth1).
	Link *Link
	// DiskSize is the machine's disk (the image, grown): 2G by default.
	DiskSize string
	// Memory is the guest's memory in MiB: 3072 by default.
	Memory int
	// USBDisk puts the disk on a USB 3 controller (qemu-xhci, usb-storage)
	// instead of virtio: as close to a Pi 4's USB SSD boot as QEMU gets.
	USBDisk bool
	// Tap, when set, is the machine's only network: a tap device (in the
	// network namespace Spawn starts QEMU in) on a bridge that stands for
	// the cluster's switch; there is no user network then.
	Tap string
	// Spawn starts QEMU's command; nil is cmd.Start.
	Spawn func(*exec.Cmd) error
	Run   Runner

	cmd     *exec.Cmd
	killed  bool
	tryNext bool // the firmware's one-shot flag, for the next boot
	boots   int
	boot    firmwareBoot
	start   time.Time
	mu      sync.Mutex
	console strings.Builder
	marks   map[string]time.Duration
	changed chan struct{}
	exited  chan error
}

// guest paths of the machine's directory and the image inside the runner.
const (
	guestDir   = "/tmp/vm"
	guestImage = "/tmp/image/disk.img"
)

// Console returns everything the machine printed so far.
func (m *Machine) Console() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console.String()
}

// Tail returns the last lines of the console.
func (m *Machine) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(m.Console(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Link is one machine's end of a point-to-point network carried in UDP
// datagrams on the host's loopback (QEMU socket networking).
type Link struct {
	Port, PeerPort int
	// UserMAC is the MAC of the machine's second interface, on the user network.
	UserMAC string
}

// FreeUDPPorts returns n distinct free UDP ports on the loopback interface.
func FreeUDPPorts(n int) ([]int, error) {
	var ports []int
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer c.Close() // held until all are chosen, so that none repeats
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports, nil
}

// FreePort returns a free TCP port on the loopback interface.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (m *Machine) binds() map[string]string {
	return map[string]string{m.Dir: guestDir, filepath.Dir(m.Image): filepath.Dir(guestImage)}
}

func (m *Machine) tool(ctx context.Context, argv ...string) error {
	cmd, err := m.Run(ctx, m.binds(), argv...)
	if err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// PrepareDisk makes the machine's disk: a sparse copy of the image (the
// image stays as built) in a raw file that the firmware model can read,
// grown so that first-boot growth has room, like a card larger than the
// image.
func (m *Machine) PrepareDisk(ctx context.Context, size string) error {
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	m.tryNext = false
	return m.tool(ctx, "sh", "-c", "cp --sparse=always "+m.guestImagePath()+" "+guestDir+"/disk.raw && truncate -s "+size+" "+guestDir+"/disk.raw")
}

// diskPath is the machine's disk on the host.
func (m *Machine) diskPath() string { return filepath.Join(m.Dir, "disk.raw") }

// memory is the guest's memory, for QEMU.
func (m *Machine) memory() string {
	if m.Memory == 0 {
		return "3072"
	}
	return strconv.Itoa(m.Memory)
}

// Booted is what the firmware booted last: the slot, and whether it tried.
func (m *Machine) Booted() (slot int, tryboot bool) { return m.boot.Slot, m.boot.Tryboot }

func (m *Machine) guestImagePath() string {
	return filepath.Dir(guestImage) + "/" + filepath.Base(m.Image)
}

// Start boots the machine. A virt machine boots what the firmware model
// picks from its disk (firmware.go); the raspi4b one the kernel,
// initramfs and device tree already in Dir, with cmdline.
func (m *Machine) Start(ctx context.Context, cmdline string, extra ...string) error {
	if m.Board != "raspi4b" {
		b, err := m.pickBoot(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
		m.boot, cmdline = b, b.Cmdline
	}
	argv := []string{"qemu-system-aarch64", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", guestDir + "/Image", "-initrd", guestDir + "/initrd.img", "-append", cmdline, "-dtb", guestDir + "/board.dtb"}
	switch m.Board {
	case "raspi4b":
		argv = append(argv, "-M", "raspi4b", "-m", "2G", "-drive", "if=sd,format=qcow2,file="+guestDir+"/sd.img")
	default:
		// Fixed PCI slots, so that the interfaces come in a known order:
		// eth0 the link (when there is one), then the user network.
		fwd := fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-%s:22,hostfwd=tcp:127.0.0.1:%d-%s:6443", m.SSHPort, m.GuestIP, m.APIPort, m.GuestIP)
		userMAC := m.MAC
		argv = append(argv, "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", m.memory())
		if l := m.Link; l != nil {
			userMAC = l.UserMAC
			argv = append(argv, "-netdev", fmt.Sprintf("socket,id=link,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", l.PeerPort, l.Port),
				"-device", "virtio-net-pci,netdev=link,romfile=,addr=0x2,mac="+m.MAC)
		}
		if m.Tap != "" {
			argv = append(argv, "-netdev", "tap,id=link,ifname="+m.Tap+",script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=link,romfile=,addr=0x2,mac="+m.MAC)
		}
		disk := []string{"-device", "virtio-blk-pci,drive=hd,addr=0x6"}
		if m.USBDisk {
			disk = []string{"-device", "qemu-xhci,id=xhci,addr=0x6", "-device", "usb-storage,bus=xhci.0,drive=hd"}
		}
		if m.Tap == "" {
			argv = append(argv, "-netdev", "user,id=net0,"+fwd, "-device", "virtio-net-pci,netdev=net0,romfile=,addr=0x5,mac="+userMAC)
		}
		argv = append(argv, "-drive", "if=none,id=hd,format=raw,file="+guestDir+"/disk.raw")
		argv = append(argv, disk...)
		// A hardware watchdog, as a Pi has: a hang resets the machine.
		argv = append(argv, "-object", "rng-random,filename=/dev/urandom,id=rng0", "-device", "virtio-rng-pci,rng=rng0,addr=0x7",
			"-device", "i6300esb,addr=0x8", "-action", "watchdog=reset")
	}
	argv = append(argv, extra...)
	cmd, err := m.Run(ctx, m.binds(), argv...)
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	// Each boot's console is kept: console.log the latest, console-N.log
	// the boots before it.
	if m.boots > 0 {
		os.Rename(filepath.Join(m.Dir, "console.log"), filepath.Join(m.Dir, fmt.Sprintf("console-%d.log", m.boots)))
	}
	m.boots++
	log, err := os.Create(filepath.Join(m.Dir, "console.log"))
	if err != nil {
		return err
	}
	spawn := m.Spawn
	if spawn == nil {
		spawn = (*exec.Cmd).Start
	}
	if err := spawn(cmd); err != nil {
		log.Close()
		return err
	}
	// Stop and Wait may run beside a restart (try powers a rebooted node
	// on again while Ctrl-C stops it): the fields they read change under
	// mu, once the process is there to stop.
	changed, exited := make(chan struct{}, 1), make(chan error, 1)
	m.mu.Lock()
	m.cmd, m.marks, m.changed, m.exited, m.killed = cmd, map[string]time.Duration{}, changed, exited, false
	m.console.Reset()
	m.start = time.Now()
	m.mu.Unlock()
	go func() {
		r := bufio.NewReader(io.TeeReader(out, log))
		for {
			line, err := r.ReadString('\n')
			m.mu.Lock()
			m.console.WriteString(strings.ReplaceAll(line, "\r", ""))
			m.mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			if err != nil {
				break
			}
		}
		log.Close()
		err := cmd.Wait()
		// A restart that asked for a try-once boot sets the firmware's
		// flag; a power cut (Stop) leaves it clear.
		m.mu.Lock()
		m.tryNext = !m.killed && triedFlag(m.console.String())
		m.mu.Unlock()
		exited <- err
		close(exited)
	}()
	return nil
}

// WaitFor waits until the console shows marker, and returns the time since
// power-on. It fails with the console's tail on timeout or when QEMU exits.
func (m *Machine) WaitFor(ctx context.Context, stage, marker string, timeout time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	m.mu.Lock()
	start, changed, exited := m.start, m.changed, m.exited
	m.mu.Unlock()
	for {
		if strings.Contains(m.Console(), marker) {
			d := time.Since(start)
			m.mu.Lock()
			if _, ok := m.marks[stage]; !ok {
				m.marks[stage] = d
			}
			m.mu.Unlock()
			return d, nil
		}
		select {
		case <-changed:
		case err := <-exited:
			return 0, fmt.Errorf("%s: stage %q: QEMU exited (%v) before %q appeared; console tail:\n%s", m.Name, stage, err, marker, m.Tail(30))
		case <-deadline.C:
			return 0, fmt.Errorf("%s: stage %q: no %q within %s; console tail:\n%s", m.Name, stage, marker, timeout, m.Tail(30))
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Mark records a stage's time since power-on.
func (m *Machine) Mark(stage string) time.Duration {
	m.mu.Lock()
	d := time.Since(m.start)
	m.marks[stage] = d
	m.mu.Unlock()
	return d
}

// Marks returns the stages' times since power-on.
func (m *Machine) Marks() map[string]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Duration{}
	for k, v := range m.marks {
		out[k] = v
	}
	return out
}

// Stop powers the machine off (kills QEMU) and waits for it.
func (m *Machine) Stop() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	if cmd == nil || cmd.Process == nil {
		m.mu.Unlock()
		return
	}
	m.killed = true
	m.mu.Unlock()
	cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// Wait waits for QEMU to exit by itself (a guest poweroff).
func (m *Machine) Wait(timeout time.Duration) error {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	select {
	case err := <-exited:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %s; console tail:\n%s", m.Name, timeout, m.Tail(20))
	}
}

// Restart waits for the guest to restart by itself (an upgrade's reboot,
// a panic's, the watchdog's: QEMU runs with -no-reboot and exits) and
// powers it on again, as a Pi resets; the firmware model then picks what
// boots.
func (m *Machine) Restart(ctx context.Context, timeout time.Duration) error {
	if err := m.Wait(timeout); err != nil {
		return fmt.Errorf("waiting for a restart: %w", err)
	}
	return m.Start(ctx, "")
}
