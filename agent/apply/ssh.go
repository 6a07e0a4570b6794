package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/k3os-rpi/k3os-rpi4/agent/durable"
)

const (
	// keysCacheDir holds the keys fetched for github:, gitlab: and https
	// entries of ssh_authorized_keys (see FetchKeys).
	keysCacheDir = "/var/lib/k3os/keys"
	// hostKeyDir holds the SSH host keys. They live in /var so that they
	// persist, and are made on the node so that no two cards share them.
	hostKeyDir = "/var/lib/k3os/ssh"
	sshdDropIn = "/etc/ssh/sshd_config.d/10-k3os.conf"
)

// hostKeyTypes leaves out RSA: a 3072-bit key takes seconds to make on a
// Pi's first boot, and every OpenSSH client of the last ten years speaks
// ed25519.
var hostKeyTypes = []string{"ed25519", "ecdsa"}

// sshStep writes rancher's authorized_keys, the sshd settings, and the
// host keys that are missing.
func sshStep(ctx context.Context, c *Context) error {
	return errors.Join(
		authorizedKeys(c),
		c.writeFile(sshdDropIn, sshdConfig(c.cfg().K3OS.SSHPasswordLogin && c.cfg().K3OS.Password != ""), 0o644, nil),
		hostKeys(ctx, c),
	)
}

// authorizedKeys writes the keys of the config, literal or cached, to
// rancher's authorized_keys. Keys added by hand are replaced: the config
// is the list of who may log in.
func authorizedKeys(c *Context) error {
	var keys []string
	add := func(line, from string) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			return
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil {
			c.log().Warnf("skipping an SSH key from %s: %v", from, err)
			return
		}
		if !slices.Contains(keys, line) {
			keys = append(keys, line)
		}
	}
	for _, k := range c.cfg().SSHAuthorizedKeys {
		k = strings.TrimSpace(k)
		if !isKeyRef(k) {
			add(k, "ssh_authorized_keys")
			continue
		}
		data, err := os.ReadFile(c.path(keyCacheFile(k)))
		if errors.Is(err, fs.ErrNotExist) {
			c.log().Infof("no keys fetched yet for %s; they are fetched once the network is up", k)
			continue
		}
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			add(line, k)
		}
	}
	if len(keys) == 0 {
		c.log().Warnf("no SSH keys for %s", rancherUser)
	}
	own, err := c.lookupOwner(rancherUser)
	if err != nil {
		own = owner{rancherUID, rancherUID}
	}
	dir := rancherHome + "/.ssh"
	if err := c.mkdir(dir, 0o700, &own); err != nil {
		return err
	}
	data := header
	for _, k := range keys {
		data += k + "\n"
	}
	return c.writeFile(dir+"/authorized_keys", []byte(data), 0o600, &own)
}

// sshdConfig is the sshd drop-in: password logins only when the config
// asks for them (ssh_password_login), never because a console password is
// set: rancher has passwordless sudo.
func sshdConfig(password bool) []byte {
	pw := "no"
	if password {
		pw = "yes"
	}
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("# sshd keeps the first value it reads: a drop-in sorting before this one\n")
	b.WriteString("# (write_files: /etc/ssh/sshd_config.d/05-local.conf) overrides it.\n")
	b.WriteString("PermitRootLogin no\n")
	b.WriteString("PasswordAuthentication " + pw + "\n")
	b.WriteString("KbdInteractiveAuthentication no\n")
	b.WriteString("# As in k3OS. Tunnelling kubectl through ssh needs it set to yes.\n")
	b.WriteString("AllowTcpForwarding no\n")
	for _, t := range hostKeyTypes {
		b.WriteString("HostKey " + hostKeyPath(t) + "\n")
	}
	return []byte(b.String())
}

func hostKeyPath(typ string) string {
	return hostKeyDir + "/ssh_host_" + typ + "_key"
}

// hostKeys makes the host keys that do not exist yet, or that a power
// cut left empty (sshd refuses to start with one): each is written under
// a temporary name, synced and renamed, so that it is whole or absent.
func hostKeys(ctx context.Context, c *Context) error {
	if err := c.mkdir(hostKeyDir, 0o700, nil); err != nil {
		return err
	}
	var errs []error
	for _, t := range hostKeyTypes {
		p := c.path(hostKeyPath(t))
		if nonEmpty(p) && nonEmpty(p+".pub") {
			continue
		}
		c.log().Infof("making the %s host key", t)
		tmp := p + ".new"
		os.Remove(tmp)
		os.Remove(tmp + ".pub")
		if err := c.run(ctx, "ssh-keygen", "-q", "-N", "", "-t", t, "-f", tmp); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range []string{tmp, tmp + ".pub"} {
			errs = append(errs, syncFile(f))
		}
		errs = append(errs, os.Rename(tmp+".pub", p+".pub"), os.Rename(tmp, p), durable.SyncDir(filepath.Dir(p)))
	}
	return errors.Join(errs...)
}

func nonEmpty(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Size() > 0
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// isKeyRef tells whether an ssh_authorized_keys entry names keys to fetch
// rather than being a key.
func isKeyRef(k string) bool {
	return strings.HasPrefix(k, "github:") || strings.HasPrefix(k, "gitlab:") || strings.HasPrefix(k, "https://")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// keyCacheFile is where the keys of a reference are cached:
// github-USER.keys, gitlab-USER.keys, or for a URL its host and a hash of
// the whole URL (so that two URLs never share a file).
func keyCacheFile(ref string) string {
	var name string
	if site, user, ok := strings.Cut(ref, ":"); ok && (site == "github" || site == "gitlab") {
		name = site + "-" + unsafeName.ReplaceAllString(user, "_")
	} else {
		host, _, _ := strings.Cut(strings.TrimPrefix(ref, "https://"), "/")
		sum := sha256.Sum256([]byte(ref))
		name = "url-" + unsafeName.ReplaceAllString(host, "_") + "-" + hex.EncodeToString(sum[:6])
	}
	return path.Join(keysCacheDir, name+".keys")
}
