package apply

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// account is one line of /etc/passwd.
type account struct {
	uid, gid    int
	home, shell string
}

// group is one line of /etc/group.
type group struct {
	gid     int
	members []string
}

// readColonFile splits the lines of a passwd-style file (a path on the
// node) into fields. A missing file has no lines.
func (c *Context) readColonFile(p string) ([][]string, error) {
	data, err := os.ReadFile(c.path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lines [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines = append(lines, strings.Split(line, ":"))
	}
	return lines, sc.Err()
}

func (c *Context) accounts() (map[string]account, error) {
	lines, err := c.readColonFile("/etc/passwd")
	m := map[string]account{}
	for _, f := range lines {
		if len(f) < 7 {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		m[f[0]] = account{uid: uid, gid: gid, home: f[5], shell: f[6]}
	}
	return m, err
}

func (c *Context) groups() (map[string]group, error) {
	lines, err := c.readColonFile("/etc/group")
	m := map[string]group{}
	for _, f := range lines {
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		m[f[0]] = group{gid: gid, members: members}
	}
	return m, err
}

// passwordHashes maps user names to their /etc/shadow hash. It is only
// used to skip needless changes, so a shadow file that cannot be read
// gives an empty map.
func (c *Context) passwordHashes() map[string]string {
	lines, _ := c.readColonFile("/etc/shadow")
	m := map[string]string{}
	for _, f := range lines {
		if len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// lookupOwner resolves "user" or "user:group", by name or number, against
// the node's passwd and group files. Without a group, the user's primary
// group is taken (for a number not in passwd, the same number, as Debian's
// user private groups have it); an empty spec is root:root.
func (c *Context) lookupOwner(spec string) (owner, error) {
	if spec == "" {
		return owner{0, 0}, nil
	}
	user, grp, hasGroup := strings.Cut(spec, ":")
	accounts, err := c.accounts()
	if err != nil {
		return owner{}, err
	}
	var o owner
	if a, ok := accounts[user]; ok {
		o = owner{a.uid, a.gid}
	} else if uid, err := strconv.Atoi(user); err == nil && uid >= 0 {
		o = owner{uid, uid}
		for _, a := range accounts {
			if a.uid == uid {
				o.gid = a.gid
				break
			}
		}
	} else {
		return owner{}, fmt.Errorf("no user %q in /etc/passwd", user)
	}
	if !hasGroup {
		return o, nil
	}
	groups, err := c.groups()
	if err != nil {
		return owner{}, err
	}
	if g, ok := groups[grp]; ok {
		o.gid = g.gid
	} else if gid, err := strconv.Atoi(grp); err == nil && gid >= 0 {
		o.gid = gid
	} else {
		return owner{}, fmt.Errorf("no group %q in /etc/group", grp)
	}
	return o, nil
}
