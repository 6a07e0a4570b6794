package upgrade

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshServer answers on a local port with an SSH banner, as sshd does.
func sshServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestHealth(t *testing.T) {
	dir := t.TempDir()
	status := filepath.Join(dir, "status.json")
	k3s := map[string]string{}
	h := Health{StatusFile: status, SSH: sshServer(t), Node: "node-1",
		Run: func(_ context.Context, name string, args ...string) ([]byte, error) {
			if out, ok := k3s[filepath.Base(name)]; ok {
				return []byte(out + "\n"), nil
			}
			return nil, errors.New("exit status 1")
		}}
	check := func(want string, fatal bool) {
		t.Helper()
		err := h.Check(context.Background())
		if want == "" {
			if err != nil {
				t.Errorf("unhealthy: %v", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) || errors.As(err, new(Fatal)) != fatal {
			t.Errorf("got %v, want %q (fatal %v)", err, want, fatal)
		}
	}
	check("not applied yet", false)
	os.WriteFile(status, []byte(`{"steps":[{"name":"users","ok":true},{"name":"sysctl","ok":false,"error":"bad key"}]}`), 0o644)
	check("sysctl: bad key", true)
	os.WriteFile(status, []byte(`{"steps":[{"name":"users","ok":true}]}`), 0o644)
	check("", false)

	h.K3s = true
	check("systemd does not say whether k3s is active: exit status 1", false)
	k3s["systemctl"] = "activating"
	check("k3s is activating", false)
	k3s["systemctl"] = "active"
	check("not say the node node-1 is Ready", false)
	k3s["kubectl"] = "False"
	check(`Ready="False"`, false)
	k3s["kubectl"] = "True"
	check("", false)

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	h.SSH = l.Addr().String()
	l.Close()
	check("sshd is not listening", false)
}

// The reason a trial gives is what was last not healthy, not that the
// check in flight at the deadline was cut short.
func TestWaitHealthyKeepsTheLastReason(t *testing.T) {
	calls := 0
	err := waitHealthy(context.Background(), func(ctx context.Context) error {
		if calls++; calls == 1 {
			return errors.New("k3s is activating, not active")
		}
		<-ctx.Done()
		return errors.New("signal: killed")
	}, 2100*time.Millisecond)
	if calls != 2 || err == nil || err.Error() != "not healthy within 2.1s: k3s is activating, not active" {
		t.Fatalf("after %d checks: %v", calls, err)
	}
}
