package apply

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
)

const (
	environmentFile = "/etc/environment"
	envBegin        = "# BEGIN k3os: k3os.environment, rewritten at every boot"
	envEnd          = "# END k3os"
)

// environmentStep puts k3os.environment into /etc/environment, between
// markers so that the variables a later config drops are removed too. The
// file's other lines are kept, except those setting one of our variables.
func environmentStep(ctx context.Context, c *Context) error {
	env := c.cfg().K3OS.Environment
	old, err := os.ReadFile(c.path(environmentFile))
	if errors.Is(err, fs.ErrNotExist) && len(env) == 0 {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ours, qerr := envLines(env)
	data := mergeEnvironment(string(old), env, ours)
	return errors.Join(qerr, c.writeFile(environmentFile, []byte(data), 0o644, nil))
}

func mergeEnvironment(old string, env map[string]string, ours []string) string {
	var in, out []string
	if old != "" {
		in = strings.Split(strings.TrimRight(old, "\n"), "\n")
	}
	inBlock := false
	for _, l := range in {
		switch {
		case l == envBegin:
			inBlock = true
		case l == envEnd:
			inBlock = false
		case inBlock:
		default:
			name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "export "), "=")
			if _, mine := env[name]; !mine {
				out = append(out, l)
			}
		}
	}
	if len(ours) > 0 {
		out = append(out, envBegin)
		out = append(out, ours...)
		out = append(out, envEnd)
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}
