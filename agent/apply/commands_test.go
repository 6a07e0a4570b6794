package apply

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunCommands(t *testing.T) {
	n := newNode(t, nil)
	n.run.fail = func(c Command) error {
		if c.Args[1] == "false" {
			return errors.New("exit status 1")
		}
		return nil
	}
	err := RunCommands(t.Context(), n.Context, "run_cmd", []string{"echo a", "false", "echo 'b c' > /tmp/x"})
	if err == nil || err.Error() != "run_cmd[1]: exit status 1" {
		t.Errorf("RunCommands error = %v, want %q", err, "run_cmd[1]: exit status 1")
	}
	want := []Command{
		{Name: "/bin/sh", Args: []string{"-c", "echo a"}},
		{Name: "/bin/sh", Args: []string{"-c", "false"}},
		{Name: "/bin/sh", Args: []string{"-c", "echo 'b c' > /tmp/x"}},
	}
	if diff := cmp.Diff(want, n.run.calls); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

func TestExecRunner(t *testing.T) {
	r := ExecRunner{}
	if err := r.Run(t.Context(), Command{Name: "/bin/sh", Args: []string{"-c", `read x; test "$x" = secret`}, Stdin: "secret\n"}); err != nil {
		t.Errorf("Run with stdin = %v, want nil", err)
	}
	err := r.Run(t.Context(), Command{Name: "/bin/sh", Args: []string{"-c", "echo oops >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "exit status 3: oops") {
		t.Errorf("Run of a failing command = %v, want its status and output", err)
	}
}

func TestCommandString(t *testing.T) {
	c := Command{Name: "ssh-keygen", Args: []string{"-N", "", "-f", "/a b"}, Stdin: "secret"}
	if got, want := c.String(), `ssh-keygen -N "" -f "/a b"`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
