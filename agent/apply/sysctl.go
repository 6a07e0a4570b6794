package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

const sysctlFile = "/etc/sysctl.d/90-k3os.conf"

// sysctlStep writes the config's sysctl settings and applies them now.
func sysctlStep(ctx context.Context, c *Context) error {
	settings := c.cfg().K3OS.Sysctl
	keys := slices.Sorted(maps.Keys(settings))
	var ls []string
	var errs []error
	for _, k := range keys {
		v := settings[k]
		if strings.ContainsAny(k+v, "\n\r") {
			errs = append(errs, fmt.Errorf("sysctl %q: line break in the key or value", k))
			continue
		}
		ls = append(ls, k+" = "+v)
	}
	data := lines(ls)
	if err := c.writeOrRemove(sysctlFile, data, 0o644); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if data != nil {
		errs = append(errs, c.run(ctx, "sysctl", "-p", c.path(sysctlFile)))
	}
	return errors.Join(errs...)
}
