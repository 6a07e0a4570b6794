package apply

import (
	"context"
	"errors"
	"fmt"
)

// RunCommands runs the commands of a stage ("boot_cmd", "run_cmd") with
// /bin/sh -c, one after the other, going on past failures. A command that
// starts a daemon in the background should redirect its output: see
// ExecRunner.
func RunCommands(ctx context.Context, c *Context, stage string, cmds []string) error {
	var errs []error
	for i, cmd := range cmds {
		c.log().WithField("stage", stage).Infof("running %s", cmd)
		if err := c.run(ctx, "/bin/sh", "-c", cmd); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", stage, i, err))
		}
	}
	return errors.Join(errs...)
}

func bootCmdStep(ctx context.Context, c *Context) error {
	return RunCommands(ctx, c, "boot_cmd", c.cfg().BootCmd)
}
