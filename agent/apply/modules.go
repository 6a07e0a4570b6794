package apply

import (
	"context"
	"errors"
	"strings"
)

const (
	modulesLoadFile = "/etc/modules-load.d/k3os.conf"
	modprobeFile    = "/etc/modprobe.d/k3os.conf"
)

// modulesStep loads the config's kernel modules now, and writes them for
// systemd-modules-load, with their parameters for modprobe. Every module
// is tried even when one fails.
func modulesStep(ctx context.Context, c *Context) error {
	var load, options []string
	type module struct {
		name   string
		params []string
	}
	var mods []module
	for _, m := range c.cfg().K3OS.Modules {
		f := strings.Fields(m)
		if len(f) == 0 {
			continue
		}
		mods = append(mods, module{f[0], f[1:]})
		load = append(load, f[0])
		if len(f) > 1 {
			options = append(options, "options "+strings.Join(f, " "))
		}
	}
	errs := []error{
		c.writeOrRemove(modulesLoadFile, lines(load), 0o644),
		c.writeOrRemove(modprobeFile, lines(options), 0o644),
	}
	for _, m := range mods {
		errs = append(errs, c.run(ctx, "modprobe", append([]string{m.name}, m.params...)...))
	}
	return errors.Join(errs...)
}

// lines is the content of an agent-owned file of these lines, or nil
// when there are none (the file is then removed).
func lines(ls []string) []byte {
	if len(ls) == 0 {
		return nil
	}
	return []byte(header + strings.Join(ls, "\n") + "\n")
}
