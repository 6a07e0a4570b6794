package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Command is a program to run with its arguments and input.
type Command struct {
	Name string
	Args []string
	// Stdin is fed to the program. It may hold a password: it is never
	// logged nor put in errors.
	Stdin string
}

// String is the command line, with arguments quoted where needed.
func (c Command) String() string {
	words := []string{c.Name}
	for _, a := range c.Args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`;&|<>*?") {
			a = strconv.Quote(a)
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// CommandRunner runs programs on the node. Tests record instead.
type CommandRunner interface {
	Run(ctx context.Context, cmd Command) error
}

// ExecRunner runs programs with os/exec. Their output goes to Log, and its
// end into the error when they fail.
type ExecRunner struct {
	Log logrus.FieldLogger
}

// waitDelay bounds how long Run waits for the output of a command's
// background children (boot_cmd "daemon &") once the command has exited.
const waitDelay = 2 * time.Second

// Run runs cmd and waits for it.
func (r ExecRunner) Run(ctx context.Context, cmd Command) error {
	x := exec.CommandContext(ctx, cmd.Name, cmd.Args...)
	if cmd.Stdin != "" {
		x.Stdin = strings.NewReader(cmd.Stdin)
	}
	var out bytes.Buffer
	x.Stdout, x.Stderr = &out, &out
	x.WaitDelay = waitDelay
	err := x.Run()
	if r.Log != nil && out.Len() > 0 {
		r.Log.WithField("cmd", cmd.Name).Info(strings.TrimRight(out.String(), "\n"))
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The command succeeded but left a child holding its output.
		if r.Log != nil {
			r.Log.WithField("cmd", cmd.Name).Warn("a background process kept the command's output open; redirect its output (>/dev/null 2>&1)")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %v%s", cmd, err, tail(out.String()))
	}
	return nil
}

// tail is the last lines of a command's output, for an error message.
func tail(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	const max = 400
	if len(out) > max {
		out = "..." + out[len(out)-max:]
	}
	return ": " + strings.ReplaceAll(out, "\n", " / ")
}
