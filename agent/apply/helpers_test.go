package apply

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// recorder is a CommandRunner that records commands. ssh-keygen creates
// its -f file and the .pub beside it, as the real one would, so that a
// second run can see them.
type recorder struct {
	calls []Command
	// fail, when set, gives the error of a command.
	fail func(Command) error
}

func (r *recorder) Run(ctx context.Context, cmd Command) error {
	r.calls = append(r.calls, cmd)
	if cmd.Name == "ssh-keygen" {
		if i := slices.Index(cmd.Args, "-f"); i >= 0 {
			os.WriteFile(cmd.Args[i+1], []byte("key"), 0o600)
			os.WriteFile(cmd.Args[i+1]+".pub", []byte("ssh-ed25519 AAAA"), 0o644)
		}
	}
	if r.fail != nil {
		return r.fail(cmd)
	}
	return nil
}

// lines are the recorded commands as command lines, with the root left out.
func (r *recorder) lines(root string) []string {
	var out []string
	for _, c := range r.calls {
		out = append(out, strings.ReplaceAll(c.String(), root, ""))
	}
	return out
}

var tmpName = regexp.MustCompile(`/\.([^/]+)\.tmp-\d+$`)

type chownCall struct {
	Path     string
	UID, GID int
}

type testNode struct {
	*Context
	run    *recorder
	chowns []chownCall
}

const (
	basePasswd = "root:x:0:0:root:/root:/bin/bash\nrancher:x:1000:1000::/home/rancher:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"
	baseGroup  = "root:x:0:\nsudo:x:27:rancher\nwww-data:x:33:\nrancher:x:1000:\nadm:x:4:\n"
	baseShadow = "root:*:19000:0:99999:7:::\nrancher:!:19000:0:99999:7:::\n"
)

// newNode is a node root in a temporary directory with the base account
// files, a recording runner and a recording chown.
func newNode(t *testing.T, cfg *nodeconfig.Config) *testNode {
	t.Helper()
	root := t.TempDir()
	writeTestFile(t, root, "/etc/passwd", basePasswd)
	writeTestFile(t, root, "/etc/group", baseGroup)
	writeTestFile(t, root, "/etc/shadow", baseShadow)
	log := logrus.New()
	log.SetOutput(io.Discard)
	n := &testNode{run: &recorder{}}
	n.Context = &Context{
		Root:    root,
		Config:  cfg,
		MAC:     "dc:a6:32:01:02:03",
		Version: "0.1.0",
		Runner:  n.run,
		Log:     log,
		Chown: func(f *os.File, uid, gid int) error {
			// The file written is a temporary one, renamed into place.
			p := tmpName.ReplaceAllString(f.Name(), "/$1")
			rel, _ := filepath.Rel(root, p)
			n.chowns = append(n.chowns, chownCall{"/" + rel, uid, gid})
			return nil
		},
	}
	return n
}

func writeTestFile(t *testing.T, root, p, data string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// read is the content of p under the node's root, "" when missing.
func (n *testNode) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Root, p))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func (n *testNode) mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(n.Root, p))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func (n *testNode) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(n.Root, p))
	return err == nil
}

// snapshot maps every file under the root, except the status file, to its
// mode and content.
func (n *testNode) snapshot(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(n.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.Root, p)
		if "/"+rel == StatusFile {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var data []byte
		if fi.Mode().IsRegular() {
			data, _ = os.ReadFile(p)
		}
		m["/"+rel] = fi.Mode().String() + " " + string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// step runs one step function and fails the test on its error.
func (n *testNode) step(t *testing.T, f func(context.Context, *Context) error) {
	t.Helper()
	if err := f(context.Background(), n.Context); err != nil {
		t.Fatalf("step: %v", err)
	}
}
