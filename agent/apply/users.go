package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The one login user of the image, as in k3OS.
const (
	rancherUser  = "rancher"
	rancherUID   = 1000
	rancherHome  = "/home/rancher"
	rancherShell = "/bin/bash"
	adminGroup   = "sudo"
)

// usersStep makes sure user rancher exists with sudo rights and the
// configured password, and that root cannot log in.
func usersStep(ctx context.Context, c *Context) error {
	accounts, err := c.accounts()
	if err != nil {
		return err
	}
	groups, err := c.groups()
	if err != nil {
		return err
	}
	_, hasAdmin := groups[adminGroup]
	var errs []error
	if a, ok := accounts[rancherUser]; !ok {
		args := []string{"--create-home", "--uid", strconv.Itoa(rancherUID), "--home-dir", rancherHome, "--shell", rancherShell}
		if _, ok := groups[rancherUser]; ok {
			// useradd --user-group fails when the group exists.
			args = append(args, "--gid", rancherUser)
		} else {
			args = append(args, "--user-group")
		}
		if hasAdmin {
			args = append(args, "--groups", adminGroup)
		}
		if err := c.run(ctx, "useradd", append(args, rancherUser)...); err != nil {
			// Without the user the rest of this step cannot work.
			return err
		}
	} else {
		if a.uid != rancherUID {
			c.log().Warnf("user %s has uid %d, not %d; leaving it", rancherUser, a.uid, rancherUID)
		}
		if a.shell != rancherShell {
			errs = append(errs, c.run(ctx, "usermod", "--shell", rancherShell, rancherUser))
		}
		if hasAdmin && !slices.Contains(groups[adminGroup].members, rancherUser) {
			errs = append(errs, c.run(ctx, "usermod", "--append", "--groups", adminGroup, rancherUser))
		}
		errs = append(errs, ensureHome(c, owner{a.uid, a.gid}))
	}
	if !hasAdmin {
		c.log().Warnf("no group %s; %s gets sudo rights from /etc/sudoers.d only", adminGroup, rancherUser)
	}
	errs = append(errs,
		c.writeFile("/etc/sudoers.d/"+rancherUser, []byte(rancherUser+" ALL=(ALL) NOPASSWD: ALL\n"), 0o440, nil),
		setPassword(ctx, c),
		lockRoot(ctx, c),
	)
	return errors.Join(errs...)
}

// setPassword gives rancher the configured password: a crypt hash as it
// is, plain text hashed by chpasswd, none locked. chpasswd reads from stdin
// so that neither shows in the process list.
func setPassword(ctx context.Context, c *Context) error {
	pw := c.cfg().K3OS.Password
	current := c.passwordHashes()[rancherUser]
	switch {
	case pw == "":
		if locked(current) {
			return nil
		}
		return c.run(ctx, "usermod", "--password", "!", rancherUser)
	case strings.ContainsAny(pw, "\n\r"):
		return fmt.Errorf("k3os.password holds a line break")
	case strings.HasPrefix(pw, "$"):
		if current == pw {
			return nil
		}
		return c.runner().Run(ctx, Command{Name: "chpasswd", Args: []string{"--encrypted"}, Stdin: rancherUser + ":" + pw + "\n"})
	default:
		// A plain password cannot be compared with the stored hash, so it
		// is set (with a new salt) at every boot.
		return c.runner().Run(ctx, Command{Name: "chpasswd", Stdin: rancherUser + ":" + pw + "\n"})
	}
}

// lockRoot locks root's password and removes the keys that would let root
// log in.
func lockRoot(ctx context.Context, c *Context) error {
	var err error
	if !locked(c.passwordHashes()["root"]) {
		err = c.run(ctx, "usermod", "--password", "!", "root")
	}
	return errors.Join(err, c.removeFile("/root/.ssh/authorized_keys"))
}

// locked tells whether a shadow hash allows no password login.
func locked(hash string) bool {
	return hash != "" && (hash[0] == '!' || hash[0] == '*')
}

// ensureHome makes rancher's home when the account exists without it: the
// account may come with the image while /home starts empty.
func ensureHome(c *Context, own owner) error {
	if c.exists(rancherHome) {
		return nil
	}
	if err := c.mkdir(rancherHome, 0o700, &own); err != nil {
		return err
	}
	c.log().Infof("made %s", rancherHome)
	return nil
}
