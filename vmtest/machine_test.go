package vmtest

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// A machine that restarts again and again (as try powers a rebooted node
// on again) while it is stopped and waited on: go test -race checks that
// Start, Stop, Wait and WaitFor share its state safely.
func TestRestartBesideStop(t *testing.T) {
	m := &Machine{Name: "m", Board: "raspi4b", Dir: t.TempDir(),
		Run: func(ctx context.Context, _ map[string]string, _ ...string) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "sh", "-c", "echo booted"), nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if m.Wait(time.Minute) != nil || m.Start(ctx, "") != nil {
				return
			}
		}
	}()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		m.WaitFor(ctx, "boot", "booted", time.Second)
		m.Mark("seen")
	}
	cancel()
	m.Stop()
	<-done
	if m.boots < 2 {
		t.Fatalf("powered on %d times: the restart loop never ran", m.boots)
	}
}
