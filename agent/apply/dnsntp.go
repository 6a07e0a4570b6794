package apply

import (
	"context"
	"errors"
	"strings"
)

const (
	resolvedFile  = "/etc/systemd/resolved.conf.d/k3os.conf"
	timesyncdFile = "/etc/systemd/timesyncd.conf.d/k3os.conf"
)

// dnsNTPStep gives systemd-resolved the config's DNS servers and
// systemd-timesyncd its time servers. Either file is removed when the
// config no longer sets its servers.
func dnsNTPStep(ctx context.Context, c *Context) error {
	k := c.cfg().K3OS
	return errors.Join(
		c.writeOrRemove(resolvedFile, section("Resolve", "DNS", k.DNSNameservers), 0o644),
		c.writeOrRemove(timesyncdFile, section("Time", "NTP", k.NTPServers), 0o644),
	)
}

// section is a one-key systemd config file, or nil without values.
func section(name, key string, values []string) []byte {
	if len(values) == 0 {
		return nil
	}
	return []byte(header + "[" + name + "]\n" + key + "=" + strings.Join(values, " ") + "\n")
}
