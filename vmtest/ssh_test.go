package vmtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Like QEMU's user network before the guest is up: the connection is
// accepted and nothing answers. An attempt gives up after the banner wait,
// not after the handshake's.
func TestDialSSHSilentPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = dialSSH(l.Addr().String(), &ssh.ClientConfig{User: "rancher", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err == nil || !strings.Contains(err.Error(), "no SSH banner") {
		t.Fatalf("got %v, want a missing banner", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the attempt took %s", d)
	}
}

// The banner read while waiting reaches the SSH handshake: Dial logs in to
// a real SSH server and reports its host key.
func TestDialLogsIn(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(hostPriv)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if c.User() == "rancher" && string(k.Marshal()) == string(key.Signer.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, ssh.ErrNoAuth
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for ch := range chans {
			ch.Reject(ssh.Prohibited, "no sessions here")
		}
	}()
	sess, err := Dial(context.Background(), l.Addr().(*net.TCPAddr).Port, "rancher", key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if want := ssh.FingerprintSHA256(hostKey.PublicKey()); sess.HostKey != want {
		t.Errorf("host key %s, want %s", sess.HostKey, want)
	}
}
