package apply

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// Hostname is the node's name: the config's hostname, or "k3os-" and the
// last 6 hex digits of the MAC (dc:a6:32:01:02:03 gives k3os-010203).
func Hostname(cfg *nodeconfig.Config, mac string) string {
	if cfg != nil && cfg.Hostname != "" {
		return cfg.Hostname
	}
	hex := strings.ToLower(strings.NewReplacer(":", "", "-", "", ".", "").Replace(mac))
	if len(hex) < 6 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "k3os"
	}
	return "k3os-" + hex[len(hex)-6:]
}

// hostnameStep names the node: /etc/hostname, /etc/hosts and the kernel's
// hostname.
func hostnameStep(ctx context.Context, c *Context) error {
	name := Hostname(c.Config, c.MAC)
	if err := c.writeFile("/etc/hostname", []byte(name+"\n"), 0o644, nil); err != nil {
		return err
	}
	old, err := os.ReadFile(c.path("/etc/hosts"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := c.writeFile("/etc/hosts", etcHosts(old, name), 0o644, nil); err != nil {
		return err
	}
	return c.run(ctx, "hostname", name)
}

// etcHosts is /etc/hosts with the node's own line (127.0.1.1, as Debian
// has it) for name, keeping the other lines and adding the localhost ones
// when they are missing.
func etcHosts(old []byte, name string) []byte {
	self := "127.0.1.1\t" + name
	if short, _, ok := strings.Cut(name, "."); ok {
		self += " " + short
	}
	var lines []string
	if s := strings.TrimRight(string(old), "\n"); s != "" {
		lines = strings.Split(s, "\n")
	}
	var out []string
	v4, v6 := -1, false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		if len(f) > 1 && slices.Contains(f[1:], "localhost") {
			switch f[0] {
			case "127.0.0.1":
				v4 = len(out)
			case "::1":
				v6 = true
			}
		}
		out = append(out, l)
	}
	if v4 < 0 {
		out = append([]string{"127.0.0.1\tlocalhost"}, out...)
		v4 = 0
	}
	out = slices.Insert(out, v4+1, self)
	if !v6 {
		out = append(out, "::1\t\tlocalhost ip6-localhost ip6-loopback")
	}
	return []byte(strings.Join(out, "\n") + "\n")
}
