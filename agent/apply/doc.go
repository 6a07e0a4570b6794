// Package apply turns a node's config into the state of the running node:
// the files under /etc and /var that systemd, sshd, networkd,
// wpa_supplicant and k3s read, and the few commands (useradd, sysctl,
// modprobe, systemctl...) that change the running system.
//
// k3os-agent runs Apply at every boot, as a systemd oneshot ordered before
// the services it configures. Every step is idempotent: the same config
// gives the same files, and a file that already holds what a step would
// write is left alone. Steps that own a file remove it when the config no
// longer asks for it.
//
// Every path is taken under Context.Root ("/" on the device) and every
// program runs through Context.Runner, so each step can be tested in a
// temporary directory with a runner that records instead of running.
package apply
