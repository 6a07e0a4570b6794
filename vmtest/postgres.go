package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// postgres is a throwaway PostgreSQL server on the host's loopback, run
// from Debian's packages in a tools root (Suite.RunPostgres), with its data
// under the test directory.
type postgres struct {
	run  Runner
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// guest path of the server's directory inside its runner.
const postgresDir = "/tmp/pg"

// startPostgres initialises a database cluster and starts the server
// (PostgreSQL refuses to run as root: it runs as the tools root's
// postgres user), then creates the database k3s will use.
func (s *Suite) startPostgres(ctx context.Context) (*postgres, error) {
	if s.RunPostgres == nil || s.Cluster.PostgresPort == 0 {
		return nil, fmt.Errorf("no PostgreSQL runner or port for the datastore case")
	}
	if portOpen(s.Cluster.PostgresPort) {
		return nil, fmt.Errorf("port %d, where the test cluster's datastore_endpoint points, is taken on the host", s.Cluster.PostgresPort)
	}
	p := &postgres{run: s.RunPostgres, dir: filepath.Join(s.Dir, "postgres"), port: s.Cluster.PostgresPort, done: make(chan struct{})}
	os.RemoveAll(p.dir)
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	script := fmt.Sprintf(`set -e
bin=$(echo /usr/lib/postgresql/*/bin)
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
chown postgres: %[1]s
echo %[2]s > %[1]s/pwfile
as_postgres "$bin/initdb" -D %[1]s/data -U %[3]s --pwfile=%[1]s/pwfile --auth=scram-sha-256 > %[1]s/initdb.log
rm %[1]s/pwfile
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D %[1]s/data \
	-c listen_addresses=127.0.0.1 -c port=%[4]d -c unix_socket_directories=%[1]s -c fsync=off`,
		postgresDir, postgresPassword, postgresUser, p.port)
	cmd, err := p.run(ctx, map[string]string{p.dir: postgresDir}, "sh", "-c", script)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(p.dir, "postgres.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p.cmd = cmd
	go func() { cmd.Wait(); log.Close(); close(p.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !portOpen(p.port) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
			return nil, fmt.Errorf("PostgreSQL exited before listening: %s", strings.TrimSpace(string(b)))
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("PostgreSQL not listening on port %d within 2 minutes (log in %s)", p.port, p.dir)
		}
	}
	// Listening comes a moment before accepting queries ("the database
	// system is starting up").
	for {
		_, err := p.psql(ctx, "postgres", "CREATE DATABASE "+postgresDB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop()
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.logf("PostgreSQL listening on 127.0.0.1:%d (the node's %s:%d)", p.port, slirpHost, p.port)
	return p, nil
}

// Query runs one SQL statement in k3s's database and returns its output.
func (p *postgres) Query(ctx context.Context, sql string) (string, error) {
	return p.psql(ctx, postgresDB, sql)
}

func (p *postgres) psql(ctx context.Context, db, sql string) (string, error) {
	url := fmt.Sprintf("postgresql://%s:%s@127.0.0.1:%d/%s", postgresUser, postgresPassword, p.port, db)
	cmd, err := p.run(ctx, nil, "psql", url, "-v", "ON_ERROR_STOP=1", "-tAc", sql)
	if err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Stop shuts the server down. Signalling the sandbox is not enough: the
// server runs as another user, which clears the signal that would take it
// down with its parent; so the postmaster itself gets SIGINT (fast
// shutdown), by the pid it records in its data directory.
func (p *postgres) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	// The data is owned by the tools root's postgres uid: not left behind.
	defer os.RemoveAll(filepath.Join(p.dir, "data"))
	select {
	case <-p.done: // exited: its pid file may name another process by now
		return
	default:
	}
	if b, err := os.ReadFile(filepath.Join(p.dir, "data", "postmaster.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
			syscall.Kill(pid, syscall.SIGINT)
		}
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
	}
}
