package nodeconfig

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

var (
	hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	githubRe   = regexp.MustCompile(`^(github|gitlab):[A-Za-z0-9]([A-Za-z0-9-]{0,38})$`)
	labelName  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	dnsSub     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	moduleRe   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\s+\S+=\S*)*$`)
	sysctlKey  = regexp.MustCompile(`^[A-Za-z0-9_.*/-]+$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	openRC     = regexp.MustCompile(`\b(rc-update|rc-service|openrc)\b`)
	cryptRe    = regexp.MustCompile(`^\$(1|5|6|y|2[aby])\$`)
	sshKeyType = regexp.MustCompile(`^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-\S+)\s`)
	taintEff   = map[string]bool{"NoSchedule": true, "PreferNoSchedule": true, "NoExecute": true}
)

// Placeholders of the example cluster (config/), refused in a cluster's
// config so that nobody builds a card that joins a cluster anybody could
// join, or trusts keys anybody reads: the examples' own test allows them.
const (
	// ExampleTokens starts every example token ("change-me-...").
	ExampleTokens = "change-me"
	ExampleKeys   = "github:octocat"
)

// Limits on what a config may make a node write.
const MaxFileSize = 32 << 20 // decoded write_files content

// secretFlags are k3s arguments that carry a credential; a config holds
// credentials in keys that the build resolves and the node keeps 0600.
var secretFlags = map[string]string{
	"--token": "k3os.token", "-t": "k3os.token", "--agent-token": "k3os.agent_token",
	"--datastore-endpoint": "k3os.datastore_endpoint", "--etcd-s3-access-key": "write_files (a 0600 config file)",
	"--etcd-s3-secret-key": "write_files (a 0600 config file)",
}

// Validate checks the values of one node's config. Cluster-wide rules
// (duplicate hostnames, file names) are checked by LoadCluster.
func (d *Doc) Validate() Report {
	return d.validate(false)
}

// ValidateResolved checks a config again once the build has resolved its
// ${NAME} and file: references: what they stood for must pass too. No
// message holds a secret's value.
func (d *Doc) ValidateResolved() Report {
	return d.validate(true)
}

func (d *Doc) validate(resolved bool) Report {
	v := validator{d: d, resolved: resolved}
	c := &d.Config
	if c.Hostname != "" && (len(c.Hostname) > 253 || !hostnameRe.MatchString(c.Hostname)) {
		v.errf("hostname", "use lowercase letters, digits and '-', dot-separated, each part at most 63 long", "%q is not a valid hostname", c.Hostname)
	}
	for i, k := range c.SSHAuthorizedKeys {
		p := fmt.Sprintf("ssh_authorized_keys[%d]", i)
		if strings.TrimSpace(k) == ExampleKeys {
			v.errf(p, "write your own github:USER, gitlab:USER or a public key line", "%s is the example's placeholder: its keys would let someone else in as rancher", ExampleKeys)
			continue
		}
		v.sshKey(p, k)
	}
	for i, f := range c.WriteFiles {
		v.file(fmt.Sprintf("write_files[%d]", i), f)
	}
	for i, cmd := range c.BootCmd {
		if openRC.MatchString(cmd) {
			v.warnf(fmt.Sprintf("boot_cmd[%d]", i), "use systemctl, or write a systemd unit with write_files", "OpenRC commands cannot work on this systemd image")
		}
	}
	v.k3os(&c.K3OS)
	return v.r
}

type validator struct {
	d        *Doc
	resolved bool // references are values now
	r        Report
}

// ref says whether a value is a reference still to be resolved.
func (v *validator) ref(s string) bool { return !v.resolved && isRef(s) }

func (v *validator) add(sev Severity, path, hint, format string, args ...any) {
	file, line, col := v.d.at(path)
	v.r = append(v.r, Issue{File: file, Line: line, Col: col, Severity: sev, Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (v *validator) errf(path, hint, format string, args ...any) {
	v.add(Error, path, hint, format, args...)
}

func (v *validator) warnf(path, hint, format string, args ...any) {
	v.add(Warning, path, hint, format, args...)
}

func (v *validator) sshKey(path, k string) {
	k = strings.TrimSpace(k)
	switch {
	case strings.HasPrefix(k, "github:") || strings.HasPrefix(k, "gitlab:"):
		if !githubRe.MatchString(k) {
			v.errf(path, "write github:USER with a valid user name", "%q is not a valid account reference", k)
		}
	case strings.HasPrefix(k, "https://"):
		if _, err := url.ParseRequestURI(k); err != nil {
			v.errf(path, "write a full https:// URL", "bad key URL: %v", err)
		}
	case strings.HasPrefix(k, "http://"):
		v.errf(path, "use https:// so that the keys cannot be changed on the way", "keys fetched over plain http")
	default:
		_, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		switch {
		case err == nil:
		case sshKeyType.MatchString(k):
			// A key of a known type whose body does not decode: most often
			// truncated in a copy (as in k3OS's own README example).
			v.warnf(path, "paste the whole line of ~/.ssh/id_*.pub", "the key does not decode (truncated?): %v", err)
		default:
			v.errf(path, "paste one line of ~/.ssh/id_*.pub, or write github:USER", "not an OpenSSH public key: %v", err)
		}
	}
}

// FileMode parses write_files permissions (octal; default 0644).
func FileMode(p string) (uint32, error) {
	if p == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(strings.TrimPrefix(p, "0o"), 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode", p)
	}
	return uint32(m), nil
}

var errTooLarge = fmt.Errorf("content decodes to more than %d MiB", MaxFileSize>>20)

// Decode returns the content of a write_files entry, at most MaxFileSize
// bytes: a small gzip bomb must not fill a node's memory at every boot.
func (f File) Decode() ([]byte, error) {
	data := []byte(f.Content)
	enc := strings.ToLower(f.Encoding)
	if strings.Contains(enc, "b64") || strings.Contains(enc, "base64") {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Content), ""))
		if err != nil {
			return nil, fmt.Errorf("content is not base64: %v", err)
		}
		data = b
	}
	if strings.HasPrefix(enc, "gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("content is not gzip: %v", err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("content is not gzip: %v", err)
		}
		data = b
	}
	if len(data) > MaxFileSize {
		return nil, errTooLarge
	}
	return data, nil
}

var encodings = map[string]bool{"": true, "b64": true, "base64": true, "gz": true, "gzip": true,
	"gz+b64": true, "gzip+base64": true, "gz+base64": true, "gzip+b64": true}

func (v *validator) file(path string, f File) {
	if f.Path == "" {
		v.errf(path, "add path: /etc/... to the entry", "write_files entry has no path")
	}
	if !encodings[strings.ToLower(f.Encoding)] {
		v.errf(path+".encoding", "use b64, gz or gz+b64, or leave it out for plain text", "unknown encoding %q", f.Encoding)
	} else if _, err := f.Decode(); errors.Is(err, errTooLarge) {
		v.errf(path+".content", fmt.Sprintf("put files over %d MiB into overlay/ (the root) instead", MaxFileSize>>20), "%v", err)
	} else if err != nil {
		v.errf(path+".content", "encode the content as the encoding says", "%v", err)
	}
	if _, err := FileMode(f.Permissions); err != nil {
		v.errf(path+".permissions", "quote an octal mode, e.g. \"0600\"", "%v", err)
	}
	if f.Owner != "" {
		u, g, _ := strings.Cut(f.Owner, ":")
		if u == "" || strings.ContainsAny(f.Owner, " \t") || (strings.Contains(f.Owner, ":") && g == "") {
			v.errf(path+".owner", "write user or user:group", "bad owner %q", f.Owner)
		}
	}
}

func (v *validator) k3os(k *K3OS) {
	if len(k.DataSources) > 0 {
		v.warnf("k3os.data_sources", "put the node's settings in its config file", "cloud data sources are not read on Raspberry Pi images")
	}
	if len(k.Install) > 0 {
		v.warnf("k3os.install", "remove it: the card is flashed whole", "install is read by the k3OS ISO installer only")
	}
	for i, m := range k.Modules {
		if !moduleRe.MatchString(strings.TrimSpace(m)) {
			v.errf(fmt.Sprintf("k3os.modules[%d]", i), "write \"name\" or \"name param=value\"", "bad module entry %q", m)
		}
	}
	for key := range k.Sysctl {
		if !sysctlKey.MatchString(key) {
			v.errf("k3os.sysctl."+key, "write keys like net.ipv4.ip_forward", "bad sysctl key %q", key)
		}
	}
	for i, s := range k.DNSNameservers {
		if _, err := netip.ParseAddr(s); err != nil {
			v.errf(fmt.Sprintf("k3os.dns_nameservers[%d]", i), "write an IPv4 or IPv6 address", "%q is not an IP address", s)
		}
	}
	for i, s := range k.NTPServers {
		if _, err := netip.ParseAddr(s); err != nil && !hostnameRe.MatchString(strings.ToLower(s)) {
			v.errf(fmt.Sprintf("k3os.ntp_servers[%d]", i), "write a host name or an IP address", "%q is not a host name or address", s)
		}
	}
	for i, w := range k.Wifi {
		p := fmt.Sprintf("k3os.wifi[%d]", i)
		if w.Name == "" {
			v.errf(p, "add name: SSID", "Wi-Fi network has no name")
		}
		if n := len(w.Passphrase); n > 0 && (n < 8 || n > 63) && !v.ref(w.Passphrase) {
			v.errf(p+".passphrase", "a WPA2 passphrase has 8 to 63 characters", "passphrase has %d characters", n)
		}
	}
	switch {
	case k.Password == "":
		if k.SSHPasswordLogin {
			v.errf("k3os.ssh_password_login", "set k3os.password (a crypt hash), or drop ssh_password_login", "SSH password login without a password")
		}
	case v.ref(k.Password):
	case strings.HasPrefix(k.Password, "$"):
		if !cryptRe.MatchString(k.Password) {
			v.errf("k3os.password", "make one with: mkpasswd -m sha-512", "unrecognised crypt hash")
		}
	default:
		v.errf("k3os.password", "store a crypt hash (mkpasswd -m sha-512), directly or through ${NAME} / file:PATH", "the password is plain text: the card would carry it readable")
	}
	for _, t := range []struct{ path, val string }{{"k3os.token", k.Token}, {"k3os.agent_token", k.AgentToken}} {
		if strings.HasPrefix(t.val, ExampleTokens) {
			v.errf(t.path, "make a secret (openssl rand -hex 32) and write it as ${NAME} or file:PATH", "the example's placeholder token: anyone could join this cluster")
		}
	}
	v.k3sArgs(k.K3sArgs)
	if k.ServerURL != "" {
		u, err := url.Parse(k.ServerURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.errf("k3os.server_url", "write https://HOST:6443", "%q is not an https URL", k.ServerURL)
		}
	}
	for key, val := range k.Labels {
		if msg := checkLabelKey(key); msg != "" {
			v.errf("k3os.labels."+key, "label keys are [prefix/]name, name up to 63 of [A-Za-z0-9-_.]", "%s", msg)
		}
		if len(val) > 63 || !labelName.MatchString(val) {
			v.errf("k3os.labels."+key, "label values are up to 63 of [A-Za-z0-9-_.], starting and ending alphanumeric", "bad label value %q", val)
		}
	}
	for i, t := range k.Taints {
		p := fmt.Sprintf("k3os.taints[%d]", i)
		kv, eff, ok := strings.Cut(t, ":")
		key, _, _ := strings.Cut(kv, "=")
		if !ok || !taintEff[eff] {
			v.errf(p, "write key=value:NoSchedule, PreferNoSchedule or NoExecute", "bad taint %q", t)
		} else if msg := checkLabelKey(key); msg != "" {
			v.errf(p, "taint keys follow the label key rules", "%s", msg)
		}
	}
	for key := range k.Environment {
		if !envName.MatchString(key) {
			v.errf("k3os.environment."+key, "use letters, digits and _", "bad variable name %q", key)
		}
	}
	v.role(k)
	for name, ifc := range k.Network {
		v.iface("k3os.network."+name, ifc)
	}
	if !v.resolved {
		for _, ref := range []struct{ path, val string }{{"k3os.token", k.Token}, {"k3os.agent_token", k.AgentToken},
			{"k3os.password", k.Password}, {"k3os.datastore_endpoint", k.DatastoreEndpoint}} {
			if msg := checkRef(ref.val); msg != "" {
				v.errf(ref.path, "write ${NAME} or file:PATH", "%s", msg)
			}
		}
	}
}

func (v *validator) role(k *K3OS) {
	c := &v.d.Config
	if k.Role != "" && k.Role != RoleClusterInit && k.Role != RoleServer && k.Role != RoleAgent {
		v.errf("k3os.role", "use cluster-init, server or agent", "unknown role %q", k.Role)
		return
	}
	if k.Role != "" && len(k.K3sArgs) > 0 {
		if a := k.K3sArgs[0]; (a == RoleServer || a == RoleAgent) && (a == RoleAgent) != (k.Role == RoleAgent) {
			v.errf("k3os.k3s_args[0]", "drop the first k3s_args item or the role", "k3s_args starts with %q but role is %q", a, k.Role)
		}
	}
	role := c.Role()
	switch role {
	case RoleAgent:
		if k.ServerURL == "" {
			v.errf("k3os", "add server_url: https://SERVER:6443", "an agent needs server_url")
		}
		switch {
		case k.AgentToken == "" && k.Token == "":
			v.errf("k3os", "add agent_token: (the servers' agent token, or ${ENV} / file:PATH)", "an agent needs agent_token")
		case k.AgentToken == "":
			v.warnf("k3os.token", "give the servers an agent_token and the agents that one: an agent's card then holds no server token",
				"an agent with the server token can join as a server and read the cluster's CA keys")
		}
		if k.DatastoreEndpoint != "" {
			v.errf("k3os.datastore_endpoint", "only servers talk to the datastore; remove it", "datastore_endpoint on an agent")
		}
	case RoleServer:
		if k.ServerURL != "" && k.Token == "" {
			v.errf("k3os", "add token: the one the first server was given", "a server that joins server_url needs a token")
		}
		if k.ServerURL == "" && k.Token == "" && k.AgentToken != "" {
			v.errf("k3os", "add token: (the server token, or ${ENV} / file:PATH)", "a server with agent_token needs token too")
		}
	case RoleClusterInit:
		if k.ServerURL != "" {
			v.errf("k3os.server_url", "the first server joins nobody: remove server_url, or use role: server", "cluster-init with server_url")
		}
		if k.DatastoreEndpoint != "" {
			v.errf("k3os.datastore_endpoint", "cluster-init starts embedded etcd; with an external datastore use role: server", "cluster-init with datastore_endpoint")
		}
	}
	if ep := k.DatastoreEndpoint; ep != "" && !v.ref(ep) {
		// The endpoint holds the database's password: name its scheme only.
		scheme, _, ok := strings.Cut(ep, "://")
		if !ok || (scheme != "postgres" && scheme != "mysql" && scheme != "https" && scheme != "http") {
			if !ok || strings.ContainsAny(scheme, "@:/") {
				scheme = "(none)"
			}
			v.errf("k3os.datastore_endpoint", "write postgres://USER:PASS@HOST:5432/DB, mysql://USER:PASS@tcp(HOST:3306)/DB or https://ETCD:2379", "unsupported datastore scheme %q", scheme)
		}
	}
}

// k3sArgs refuses credentials passed as k3s arguments: they would sit in
// k3s's environment file and show in its command line. The value is never
// printed.
func (v *validator) k3sArgs(args []string) {
	for i, a := range args {
		flag, _, _ := strings.Cut(a, "=")
		if key, ok := secretFlags[flag]; ok {
			v.errf(fmt.Sprintf("k3os.k3s_args[%d]", i), "set "+key+" instead; the node keeps it in a 0600 file", "%s passes a credential on k3s's command line", flag)
		}
	}
}

func (v *validator) iface(p string, ifc Interface) {
	if ifc.Address != "" {
		if _, err := netip.ParsePrefix(ifc.Address); err != nil {
			v.errf(p+".address", "write the address with its prefix length, e.g. 192.168.1.10/24", "%q is not an address/CIDR", ifc.Address)
		}
		if ifc.DHCP {
			v.errf(p, "use either dhcp: true or a static address", "both dhcp and address are set")
		}
	}
	if ifc.Gateway != "" {
		if _, err := netip.ParseAddr(ifc.Gateway); err != nil {
			v.errf(p+".gateway", "write an IP address", "%q is not an IP address", ifc.Gateway)
		} else if ifc.Address == "" {
			v.errf(p+".gateway", "a gateway goes with a static address", "gateway without address")
		}
	}
	for i, s := range ifc.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			v.errf(fmt.Sprintf("%s.dns[%d]", p, i), "write an IP address", "%q is not an IP address", s)
		}
	}
}

func checkLabelKey(key string) string {
	prefix, name, ok := strings.Cut(key, "/")
	if !ok {
		name, prefix = prefix, ""
	}
	if ok && (len(prefix) > 253 || !dnsSub.MatchString(prefix)) {
		return fmt.Sprintf("bad prefix %q in key %q", prefix, key)
	}
	if name == "" || len(name) > 63 || !labelName.MatchString(name) {
		return fmt.Sprintf("bad name in key %q", key)
	}
	return ""
}
