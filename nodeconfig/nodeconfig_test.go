package nodeconfig

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func parseValidate(t *testing.T, src string) (*Doc, Report) {
	t.Helper()
	d, r := Parse("n.yaml", []byte(src))
	if d != nil && !r.HasErrors() {
		r = append(r, d.Validate()...)
	}
	return d, r
}

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, r := Parse(f, data)
			if d == nil || r.HasErrors() {
				t.Fatalf("Parse: %v", r)
			}
			if r := d.Validate(); r.HasErrors() {
				t.Fatalf("Validate:\n%v", r)
			}
		})
	}
}

func TestK3OSReadmeExample(t *testing.T) {
	data, _ := os.ReadFile("testdata/k3os/readme.yaml")
	d, _ := Parse("k3os-readme.yaml", data)
	c := d.Config
	if c.Hostname != "myhost" || len(c.SSHAuthorizedKeys) != 2 || c.SSHAuthorizedKeys[1] != "github:ibuildthecloud" {
		t.Errorf("top level = %+v", c)
	}
	want := File{Path: "/etc/local.d/example.start", Content: "#!/bin/bash\necho hello, local service start", Owner: "root", Permissions: "0755"}
	if diff := cmp.Diff([]File{want}, c.WriteFiles); diff != "" {
		t.Errorf("write_files (-want +got):\n%s", diff)
	}
	k := c.K3OS
	if diff := cmp.Diff(map[string]string{"kernel.printk": "4 4 1 7", "kernel.kptr_restrict": "1"}, k.Sysctl); diff != "" {
		t.Errorf("sysctl: %s", diff)
	}
	if len(k.Wifi) != 2 || k.Wifi[1].Passphrase != "somethingelse" || k.Token != "TOKEN_VALUE" || k.ServerURL != "https://someserver:6443" {
		t.Errorf("k3os = %+v", k)
	}
	if c.Role() != RoleServer || len(k.Taints) != 2 || k.Labels["region"] != "us-west-1" || k.Environment["http_proxy"] != "http://myserver" {
		t.Errorf("role %q, k3os = %+v", c.Role(), k)
	}
	// Every key parses. The README's key is truncated (a warning), and its
	// password plain text, which a card must not carry: the one error.
	r := d.Validate()
	var errs []Issue
	for _, is := range r {
		if is.Severity == Error {
			errs = append(errs, is)
		}
	}
	if len(errs) != 1 || errs[0].Path != "k3os.password" || len(r) < 3 {
		t.Errorf("want warnings and the plain password's error, got:\n%v", r)
	}
}

// Spellings that real users' files carry, as k3OS accepted them.
func TestLenient(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/lenient.yaml")
	d, r := Parse("lenient.yaml", data)
	if r.HasErrors() {
		t.Fatal(r)
	}
	c := d.Config
	if got := c.SSHAuthorizedKeys; len(got) != 1 || got[0] != "github:someone" {
		t.Errorf("camelCase scalar sshAuthorizedKeys = %q", got)
	}
	if got := c.K3OS.DataSources; len(got) != 1 || got[0] != "aws" {
		t.Errorf("singular datasource at top level = %q", got)
	}
	if c.K3OS.Sysctl["net.ipv4.ip_forward"] != "1" || c.K3OS.Sysctl["vm.swappiness"] != "0" {
		t.Errorf("plural sysctls with numbers = %v", c.K3OS.Sysctl)
	}
	if len(c.K3OS.Modules) != 1 || c.Role() != RoleAgent || c.WriteFiles[1].Permissions != "0600" {
		t.Errorf("config = %+v", c)
	}
	if b, err := c.WriteFiles[1].Decode(); err != nil || string(b) != "hello" {
		t.Errorf("gz+b64 content = %q, %v", b, err)
	}
	if c.WriteFiles[0].Content != "${NOT_OURS}" {
		t.Errorf("content must not be expanded: %q", c.WriteFiles[0].Content)
	}
}

// Every class of error, with where it is reported and the hint.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // substring of the report
	}{
		{"typo", "ssh_authorised_keys: [github:a]\n", `n.yaml:1:1: error: ssh_authorised_keys: unknown key "ssh_authorised_keys" (did you mean "ssh_authorized_keys"?)`},
		{"typo nested", "k3os:\n  tokn: x\n", `n.yaml:2:3: error: k3os.tokn: unknown key "tokn" (did you mean "token"?)`},
		{"wrong level", "token: x\n", `it belongs under k3os: as k3os.token`},
		{"wrong level up", "k3os:\n  hostname: x\n", `it belongs at the top level`},
		{"cloud-init", "users: []\n", `a cloud-init key that k3OS never read`},
		{"twice", "sysctl: 1\nk3os:\n  sysctl: {a: b}\n  sysctls: {c: d}\n", `n.yaml:4:3: error: k3os.sysctl: given twice`},
		{"type map", "k3os: [a]\n", `n.yaml:1:7: error: k3os: expected a mapping of keys, got a list`},
		{"type list", "write_files: {path: /x}\n", `n.yaml:1:14: error: write_files: expected a list, got a mapping`},
		{"type scalar", "hostname: [a, b]\n", `n.yaml:1:11: error: hostname: expected a single value, got a list`},
		{"type bool", "k3os:\n  network:\n    eth0: {dhcp: maybe}\n", `n.yaml:3:18: error: k3os.network.eth0.dhcp: expected true or false`},
		{"syntax", "hostname: a\n  b: c\n", `n.yaml:2:1: error: not valid YAML`},
		{"hostname", "hostname: Bad_Name\n", `n.yaml:1:11: error: hostname: "Bad_Name" is not a valid hostname`},
		{"ssh key", "ssh_authorized_keys: [hello]\n", `ssh_authorized_keys[0]: not an OpenSSH public key`},
		{"ssh github", "ssh_authorized_keys: ['github:bad user']\n", `not a valid account reference`},
		{"ssh http", "ssh_authorized_keys: ['http://x/keys']\n", `keys fetched over plain http`},
		{"file path", "write_files:\n- content: x\n", `n.yaml:2:3: error: write_files[0]: write_files entry has no path`},
		{"file encoding", "write_files:\n- {path: /x, encoding: rot13}\n", `unknown encoding "rot13"`},
		{"file base64", "write_files:\n- {path: /x, encoding: b64, content: '!!'}\n", `content is not base64`},
		{"file mode", "write_files:\n- {path: /x, permissions: '0999'}\n", `write_files[0].permissions: "0999" is not an octal mode`},
		{"file owner", "write_files:\n- {path: /x, owner: 'root:'}\n", `bad owner "root:"`},
		{"module", "k3os: {modules: ['x y']}\n", `bad module entry "x y"`},
		{"dns", "k3os:\n  dns_nameservers: [1.1.1.300]\n", `n.yaml:2:21: error: k3os.dns_nameservers[0]: "1.1.1.300" is not an IP address`},
		{"ntp", "k3os: {ntp_servers: ['bad host']}\n", `is not a host name or address`},
		{"wifi name", "k3os: {wifi: [{passphrase: abcdefgh}]}\n", `Wi-Fi network has no name`},
		{"wifi pass", "k3os: {wifi: [{name: a, passphrase: short}]}\n", `passphrase has 5 characters`},
		{"crypt", "k3os: {password: '$9$x'}\n", `unrecognised crypt hash`},
		{"server url", "k3os: {server_url: 'http://x:6443', token: t}\n", `is not an https URL`},
		{"label", "k3os: {labels: {'-bad': x}}\n", `bad name in key "-bad"`},
		{"label value", "k3os: {labels: {a: 'b c'}}\n", `bad label value "b c"`},
		{"taint", "k3os: {taints: ['a=b:Never']}\n", `bad taint "a=b:Never"`},
		{"env", "k3os: {environment: {'1X': y}}\n", `bad variable name "1X"`},
		{"agent no url", "k3os: {role: agent, token: t}\n", `an agent needs server_url`},
		{"agent no token", "k3os:\n  server_url: https://s:6443\n", `n.yaml:2:3: error: k3os: an agent needs agent_token`},
		{"plain password", "k3os: {password: hunter22}\n", "k3os.password: the password is plain text"},
		{"example token", "k3os: {token: change-me-example-token}\n", "the example's placeholder token"},
		{"example agent token", "k3os: {agent_token: change-me-agent-token, token: t}\n", "k3os.agent_token: the example's placeholder token"},
		{"example keys", "ssh_authorized_keys: [" + ExampleKeys + "]\n", "github:octocat is the example's placeholder"},
		{"secret k3s arg", "k3os: {k3s_args: [--token=abc]}\n", "--token passes a credential on k3s's command line (set k3os.token instead"},
		{"secret k3s arg apart", "k3os: {k3s_args: [--datastore-endpoint, 'postgres://u:pw@h/db']}\n", "set k3os.datastore_endpoint instead"},
		{"password login without password", "k3os: {ssh_password_login: true}\n", "SSH password login without a password"},
		{"agent token alone on a server", "k3os: {role: server, agent_token: a}\n", "a server with agent_token needs token too"},
		{"agent datastore", "k3os: {role: agent, server_url: 'https://s:6443', token: t, datastore_endpoint: 'postgres://x'}\n", `datastore_endpoint on an agent`},
		{"join no token", "k3os: {role: server, server_url: 'https://s:6443'}\n", `needs a token`},
		{"init url", "k3os: {role: cluster-init, server_url: 'https://s:6443', token: t}\n", `cluster-init with server_url`},
		{"role", "k3os: {role: master}\n", `unknown role "master"`},
		{"role args", "k3os: {role: agent, server_url: 'https://s:6443', token: t, k3s_args: [server]}\n", `k3s_args starts with "server" but role is "agent"`},
		{"datastore", "k3os: {datastore_endpoint: 'sqlite:///x'}\n", `unsupported datastore`},
		{"address", "k3os: {network: {eth0: {address: 10.0.0.1}}}\n", `is not an address/CIDR`},
		{"gateway", "k3os: {network: {eth0: {gateway: 10.0.0.1}}}\n", `gateway without address`},
		{"dhcp and static", "k3os: {network: {eth0: {dhcp: true, address: 10.0.0.2/24}}}\n", `both dhcp and address are set`},
		{"bad ref", "k3os: {token: '${bad-name}'}\n", `is not a valid ${NAME} reference`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := parseValidate(t, tc.src)
			if !r.HasErrors() || !strings.Contains(r.String(), tc.want) {
				t.Errorf("report =\n%v\nwant an error containing\n%s", r, tc.want)
			}
		})
	}
}

// After the build resolves references, their values are checked too, and
// no message shows a secret.
func TestValidateResolved(t *testing.T) {
	for _, tc := range []struct{ name, src, env, want, secret string }{
		{"plain password from env", "k3os: {password: '${PW}'}\n", "hunter22", "the password is plain text", "hunter22"},
		{"short passphrase from env", "k3os: {wifi: [{name: home, passphrase: '${PW}'}]}\n", "short", "passphrase has 5 characters", "short"},
		{"datastore from env", "k3os: {role: server, token: t, datastore_endpoint: '${PW}'}\n", "redis://admin:s3cret@db:6379", `unsupported datastore scheme "redis"`, "s3cret"},
		{"example token from env", "k3os: {token: '${PW}'}\n", "change-me-example-token", "the example's placeholder token", "change-me-example-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, r := parseValidate(t, tc.src)
			if r.HasErrors() {
				t.Fatalf("the raw config already fails: %v", r)
			}
			env := func(string) (string, bool) { return tc.env, true }
			if r := (Secrets{Env: env}).Resolve(d); r.HasErrors() {
				t.Fatal(r)
			}
			r = d.ValidateResolved()
			if !r.HasErrors() || !strings.Contains(r.String(), tc.want) {
				t.Errorf("report =\n%v\nwant an error containing %q", r, tc.want)
			}
			if strings.Contains(r.String(), tc.secret) {
				t.Errorf("the report shows the secret %q:\n%v", tc.secret, r)
			}
		})
	}
}

// A small gz+b64 entry that decodes to 1 GiB is refused, without
// decoding it whole.
func TestWriteFilesLimit(t *testing.T) {
	var zipped bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zipped, gzip.BestCompression)
	chunk := make([]byte, 1<<20)
	for range 1024 {
		zw.Write(chunk)
	}
	zw.Close()
	content := base64.StdEncoding.EncodeToString(zipped.Bytes())
	start := time.Now()
	_, err := File{Path: "/x", Encoding: "gz+b64", Content: content}.Decode()
	if err == nil || !strings.Contains(err.Error(), "more than 32 MiB") {
		t.Errorf("Decode of %d bytes that unpack to 1 GiB: %v", len(content), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if _, err := (File{Path: "/x", Content: strings.Repeat("x", 1<<20)}).Decode(); err != nil {
		t.Errorf("1 MiB of plain content: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"openrc", "boot_cmd: ['rc-update add foo']\n", "OpenRC commands cannot work"},
		{"data sources", "k3os: {data_sources: [aws]}\n", "not read on Raspberry Pi"},
		{"install", "k3os: {install: {device: /dev/sda}}\n", "ISO installer"},
		{"truncated key", "ssh_authorized_keys: ['ssh-rsa AAAA...']\n", "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := parseValidate(t, tc.src)
			if r.HasErrors() || !strings.Contains(r.String(), "warning: ") || !strings.Contains(r.String(), tc.want) {
				t.Errorf("report =\n%v\nwant only a warning containing %q", r, tc.want)
			}
		})
	}
}

func TestRole(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"{}", RoleServer},
		{"k3os: {server_url: 'https://s:6443'}", RoleAgent},
		{"k3os: {k3s_args: [server, --cluster-init], server_url: 'https://s:6443'}", RoleServer},
		{"k3os: {role: cluster-init}", RoleClusterInit},
	} {
		d, _ := Parse("n.yaml", []byte(tc.src))
		if got := d.Config.Role(); got != tc.want {
			t.Errorf("Role(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"DC:A6:32:01:02:03": "dc:a6:32:01:02:03",
		"dc-a6-32-01-02-03": "dc:a6:32:01:02:03",
		"6A:4A:19:32:8A:50": "6a:4a:19:32:8a:50",
		"dca632010203":      "",
		"dc:a6:32:01:02":    "",
		"zz:a6:32:01:02:03": "",
	} {
		got, ok := NormalizeMAC(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadCluster(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"cluster.yaml":           "ssh_authorized_keys: [github:me]\nk3os:\n  token: shared\n  labels: {zone: a}\n",
		"DC:A6:32:00:00:01.yaml": "hostname: k3s-1\nk3os: {role: cluster-init}\n",
		"dc-a6-32-00-00-02.yml":  "hostname: k3s-2\nk3os:\n  server_url: https://k3s-1:6443\n  labels: {zone: b}\n",
		"default.yaml":           "k3os: {server_url: 'https://k3s-1:6443'}\n",
		"README.md":              "not a config",
	})
	c, r := LoadCluster(dir)
	if r.HasErrors() {
		t.Fatal(r)
	}
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name())
	}
	if diff := cmp.Diff([]string{"dc:a6:32:00:00:01", "dc:a6:32:00:00:02", "default"}, names); diff != "" {
		t.Fatalf("nodes: %s", diff)
	}
	n2 := c.Nodes[1].Doc.Config
	if n2.K3OS.Token != "shared" || n2.K3OS.Labels["zone"] != "b" || n2.SSHAuthorizedKeys[0] != "github:me" || n2.Role() != RoleAgent {
		t.Errorf("merged node 2 = %+v", n2)
	}
	if c.Nodes[0].Doc.Config.K3OS.Labels["zone"] != "a" {
		t.Errorf("node 1 labels = %v", c.Nodes[0].Doc.Config.K3OS.Labels)
	}
}

func TestLoadClusterErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"bad name", map[string]string{"node1.yaml": "hostname: a\n"}, `node1.yaml:1:1: error: file name "node1.yaml" is not a MAC address (name node files after the MAC`},
		{"same mac", map[string]string{"dc:a6:32:00:00:01.yaml": "hostname: a\n", "DC:A6:32:00:00:01.yaml": "hostname: b\n"}, `MAC dc:a6:32:00:00:01 has two files`},
		{"dup hostname", map[string]string{"dc:a6:32:00:00:01.yaml": "hostname: a\n", "dc:a6:32:00:00:02.yaml": "\nhostname: a\n"}, `dc:a6:32:00:00:02.yaml:2:11: error: hostname: hostname "a" is also used by dc:a6:32:00:00:01.yaml`},
		{"shared error located", map[string]string{"cluster.yaml": "k3os:\n  server_url: https://s:6443\n", "dc:a6:32:00:00:01.yaml": "hostname: a\n"}, `cluster.yaml:2:3: error: k3os: an agent needs agent_token`},
		{"empty", map[string]string{}, `no node configs`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := LoadCluster(writeDir(t, tc.files))
			if !r.HasErrors() || !strings.Contains(r.String(), tc.want) {
				t.Errorf("report =\n%v\nwant %s", r, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	dir := writeDir(t, map[string]string{"token": "s3cret\n"})
	d, _ := Parse("n.yaml", []byte("k3os:\n  token: file:token\n  password: ${PW}\n  wifi: [{name: a, passphrase: '${NOPE}'}]\n"))
	r := Secrets{Dir: dir, Env: func(k string) (string, bool) { return map[string]string{"PW": "$6$x$y"}[k], k == "PW" }}.Resolve(d)
	if d.Config.K3OS.Token != "s3cret" || d.Config.K3OS.Password != "$6$x$y" {
		t.Errorf("resolved = %+v", d.Config.K3OS)
	}
	if !strings.Contains(r.String(), "n.yaml:4:") || !strings.Contains(r.String(), "environment variable NOPE is not set") {
		t.Errorf("report = %v", r)
	}
}

func TestFileFor(t *testing.T) {
	dir := writeDir(t, map[string]string{"dc:a6:32:00:00:01.yaml": "", "DC-A6-32-00-00-02.yaml": "", "default.yaml": ""})
	for mac, want := range map[string]string{
		"dc:a6:32:00:00:01": "dc:a6:32:00:00:01.yaml",
		"DC:A6:32:00:00:02": "DC-A6-32-00-00-02.yaml",
		"dc:a6:32:00:00:09": "default.yaml",
	} {
		if got := filepath.Base(FileFor(dir, mac)); got != want {
			t.Errorf("FileFor(%s) = %s, want %s", mac, got, want)
		}
	}
	os.Remove(filepath.Join(dir, "default.yaml"))
	if got := FileFor(dir, "00:00:00:00:00:00"); got != "" {
		t.Errorf("FileFor with no default = %q", got)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	data, _ := os.ReadFile("testdata/k3os/readme.yaml")
	d, _ := Parse("a.yaml", data)
	out, err := Marshal(&d.Config)
	if err != nil {
		t.Fatal(err)
	}
	d2, r := Parse("b.yaml", out)
	if r.HasErrors() {
		t.Fatal(r)
	}
	if diff := cmp.Diff(d.Config, d2.Config); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files of testdata/invalid")

// Each testdata/invalid/X.yaml gives the report in X.report, as validate
// prints it (file:line:col: severity: path: message (fix)).
func TestInvalidGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 8 {
		t.Fatalf("testdata/invalid has %d cases", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, r := Parse(f, data)
			if d != nil && !r.HasErrors() {
				r = append(r, d.Validate()...)
			}
			got := r.Sorted().String()
			golden := strings.TrimSuffix(f, ".yaml") + ".report"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (make it with go test ./nodeconfig -run TestInvalidGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("report:\n%s\nwant (%s):\n%s", got, golden, want)
			}
			if !r.HasErrors() {
				t.Error("an invalid config passed")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("k3os: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, r := Parse("f.yaml", data)
		if d == nil && !r.HasErrors() {
			t.Fatal("nil doc without an error")
		}
		if d != nil && !r.HasErrors() {
			d.Validate()
		}
		for _, is := range r {
			if is.Line < 1 {
				t.Fatalf("issue without a line: %v", is)
			}
		}
	})
}
