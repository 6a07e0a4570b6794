package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Key is a throwaway SSH key pair for one test run.
type Key struct {
	Signer    ssh.Signer
	PublicKey string // authorized_keys line
	// PEM is the private key in OpenSSH form, kept next to the consoles so
	// that a failed boot can be entered by hand.
	PEM []byte
}

// NewKey makes an ed25519 key.
func NewKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "k3os-vmtest")
	if err != nil {
		return nil, err
	}
	return &Key{Signer: s, PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " k3os-vmtest",
		PEM: pem.EncodeToMemory(block)}, nil
}

// Session is an SSH connection to a machine.
type Session struct {
	client  *ssh.Client
	HostKey string
}

// Dial logs in as user with the key, retrying until the deadline while
// sshd is not up yet. Attempts overlap, a new one every half second while
// fewer than four wait: each may wait seconds for a banner that a guest
// without its address yet never sends, and the login is measured within
// half a second of sshd being reachable, not on the attempts' schedule.
func Dial(ctx context.Context, port int, user string, key *Key, timeout time.Duration) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	results := make(chan attempt)
	waiting := 0
	try := func() {
		waiting++
		go func() {
			var a attempt
			cfg := &ssh.ClientConfig{
				User: user,
				Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
				HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
					a.hostKey = ssh.FingerprintSHA256(k)
					return nil
				},
			}
			a.client, a.err = dialSSH(addr, cfg)
			select {
			case results <- a:
			case <-ctx.Done():
				if a.client != nil {
					a.client.Close()
				}
			}
		}()
	}
	try()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case a := <-results:
			waiting--
			if a.err == nil {
				return &Session{client: a.client, HostKey: a.hostKey}, nil
			}
			last = a.err
			if strings.Contains(a.err.Error(), "unable to authenticate") {
				return nil, a.err // sshd answered and said no
			}
		case <-tick.C:
			if waiting < 4 {
				try()
			}
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return nil, fmt.Errorf("no SSH login as %s on port %d within %s: %v", user, port, timeout, last)
		}
	}
}

// attempt is one login attempt's outcome.
type attempt struct {
	client  *ssh.Client
	hostKey string
	err     error
}

// dialSSH makes one login attempt. QEMU's user network accepts the TCP
// connection at once, before the guest has an address or sshd, so an
// attempt first waits a few seconds only for sshd's banner: a long wait
// there would make the measured login time as coarse as that wait.
func dialSSH(addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := r.Peek(4); err != nil {
		conn.Close()
		return nil, fmt.Errorf("no SSH banner: %w", err)
	}
	// The key exchange under emulation can take a while.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(peekedConn{conn, r}, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// peekedConn is a connection whose first bytes sit in r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Run runs a command and returns its trimmed output.
func (s *Session) Run(cmd string) (string, error) {
	return s.RunInput(cmd, nil)
}

// RunInput runs a command with stdin.
func (s *Session) RunInput(cmd string, stdin io.Reader) (string, error) {
	sess, err := s.client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var out, errOut bytes.Buffer // one buffer each: they are written concurrently
	sess.Stdout, sess.Stderr = &out, &errOut
	if stdin != nil {
		sess.Stdin = stdin
	}
	err = sess.Run(cmd)
	if err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("%q: %v: %s", cmd, err, strings.TrimSpace(out.String()+errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Close ends the connection.
func (s *Session) Close() error { return s.client.Close() }
