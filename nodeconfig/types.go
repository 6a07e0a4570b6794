// Package nodeconfig is the schema of a node's config file (the k3OS
// config.yaml format plus a few documented extensions), its lenient parser
// with file:line:col reports, its validation, and the rules of a cluster's
// config directory (config/<MAC>.yaml, default.yaml, cluster.yaml).
//
// The Go types are the source of truth: the JSON Schema and the key
// reference in docs/config.md are generated from them and their comments
// (go tool mage generate; a test fails when either is stale).
package nodeconfig

// Config is one node's configuration: the top level of a k3OS config.yaml.
type Config struct {
	// Hostname is the node's name (a DNS name; FQDNs allowed); default
	// `k3os-` and the last six hex digits of the MAC.
	Hostname string `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	// SSHAuthorizedKeys are the keys of user `rancher`: OpenSSH public key lines,
	// `github:USER`, `gitlab:USER` or https URLs (fetched once the network
	// is up, retried, cached).
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty" json:"ssh_authorized_keys,omitempty"`
	// WriteFiles are files written on every boot, before boot_cmd.
	WriteFiles []File `yaml:"write_files,omitempty" json:"write_files,omitempty"`
	// InitCmd are commands run from the initramfs, chrooted into the new
	// root before it is entered.
	InitCmd []string `yaml:"init_cmd,omitempty" json:"init_cmd,omitempty"`
	// BootCmd are commands run at boot, before the network is up.
	BootCmd []string `yaml:"boot_cmd,omitempty" json:"boot_cmd,omitempty"`
	// RunCmd are commands run once the network is online.
	RunCmd []string `yaml:"run_cmd,omitempty" json:"run_cmd,omitempty"`
	// K3OS holds the OS and k3s settings.
	K3OS K3OS `yaml:"k3os,omitempty" json:"k3os,omitempty"`
}

// File is one entry of write_files.
type File struct {
	// Path is the file's path; a relative path starts at `/` (as in k3OS).
	Path string `yaml:"path" json:"path"`
	// Content is the file's content, encoded as encoding says.
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	// Encoding is how content is encoded: unset (plain text), `b64`/`base64`,
	// `gz`/`gzip` or `gz+b64`/`gzip+base64`.
	Encoding string `yaml:"encoding,omitempty" json:"encoding,omitempty" jsonschema:"enum=,enum=b64,enum=base64,enum=gz,enum=gzip,enum=gz+b64,enum=gzip+base64,enum=gz+base64,enum=gzip+b64"`
	// Owner is `user` or `user:group`; default `root:root`.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`
	// Permissions are the file's mode as an octal string; default `0644`.
	Permissions string `yaml:"permissions,omitempty" json:"permissions,omitempty"`
}

// K3OS is the k3os: section.
type K3OS struct {
	// DataSources are cloud metadata providers (k3OS), accepted for
	// compatibility; Pi images have no metadata service (a warning).
	DataSources []string `yaml:"data_sources,omitempty" json:"data_sources,omitempty"`
	// Modules are kernel modules to load at boot, `name [param=value ...]`.
	Modules []string `yaml:"modules,omitempty" json:"modules,omitempty"`
	// Sysctl is a map of sysctl keys to values, applied at boot.
	Sysctl map[string]string `yaml:"sysctl,omitempty" json:"sysctl,omitempty"`
	// NTPServers are time servers (names or addresses) in place of the defaults.
	NTPServers []string `yaml:"ntp_servers,omitempty" json:"ntp_servers,omitempty"`
	// DNSNameservers are DNS servers for every interface (IP addresses).
	DNSNameservers []string `yaml:"dns_nameservers,omitempty" json:"dns_nameservers,omitempty"`
	// Wifi are the Wi-Fi networks to join.
	Wifi []Wifi `yaml:"wifi,omitempty" json:"wifi,omitempty"`
	// Password is the password of user `rancher`: a crypt hash (`$6$...`; make one with
	// `mkpasswd -m sha-512`) or, with a warning, plain text (hashed on the
	// node); `${NAME}` or `file:PATH` resolve at build time. Unset: password
	// login is off.
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// ServerURL is the k3s server to join, `https://SERVER:6443`; it makes
	// the node an agent unless role says otherwise.
	ServerURL string `yaml:"server_url,omitempty" json:"server_url,omitempty"`
	// Token is the cluster's server token (k3s `token`): servers share it,
	// and it lets whoever holds it join as a server and read the cluster's
	// CA keys. Agents should not hold it: give them agent_token. `${NAME}`
	// or `file:PATH` resolve at build time.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// Labels are put on the k3s node.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Taints are put on the k3s node, `key=value:Effect`.
	Taints []string `yaml:"taints,omitempty" json:"taints,omitempty"`
	// K3sArgs are extra k3s arguments; a first item `server` or `agent` sets
	// the role.
	K3sArgs []string `yaml:"k3s_args,omitempty" json:"k3s_args,omitempty"`
	// Environment is merged into `/etc/environment` and k3s's environment.
	Environment map[string]string `yaml:"environment,omitempty" json:"environment,omitempty"`
	// Install is read by the k3OS ISO installer only (a warning).
	Install map[string]any `yaml:"install,omitempty" json:"install,omitempty"`

	// Extensions that k3OS lacked.

	// Role (extension) is the node's k3s role: `cluster-init` (the first
	// server, embedded etcd), `server` (joins server_url as a server; alone,
	// a single server) or `agent`. Unset, it is derived as k3OS did: the
	// first k3s_args item, else agent when server_url is set, else a single
	// server.
	Role string `yaml:"role,omitempty" json:"role,omitempty" jsonschema:"enum=cluster-init,enum=server,enum=agent"`
	// DatastoreEndpoint (extension) is an external control-plane database:
	// `postgres://USER:PASS@HOST:5432/DB`, `mysql://USER:PASS@tcp(HOST:3306)/DB`
	// or `https://ETCD:2379`; `${NAME}` or `file:PATH` resolve at build time.
	DatastoreEndpoint string `yaml:"datastore_endpoint,omitempty" json:"datastore_endpoint,omitempty"`
	// AgentToken (extension) is the token agents join with (k3s
	// `agent-token`): on servers it is the agent token they accept, on
	// agents the one they present. It lets a node join as an agent only,
	// so an agent's card never holds the server token (the image build
	// leaves token out of an agent's config when agent_token is set).
	// `${NAME}` or `file:PATH` resolve at build time.
	AgentToken string `yaml:"agent_token,omitempty" json:"agent_token,omitempty"`
	// SSHPasswordLogin (extension) lets `rancher` log in over SSH with the
	// password; off by default: a console password never opens SSH.
	SSHPasswordLogin bool `yaml:"ssh_password_login,omitempty" json:"ssh_password_login,omitempty"`
	// Network (extension) configures interfaces by the kernel's name, as
	// k3OS had them (`eth0` is a Pi's ethernet port, `wlan0` its Wi-Fi;
	// networkd globs allowed: `"eth*"` is any wired port); interfaces not
	// listed use DHCP.
	Network map[string]Interface `yaml:"network,omitempty" json:"network,omitempty"`
}

// Wifi is one Wi-Fi network.
type Wifi struct {
	// Name is the network's SSID.
	Name string `yaml:"name" json:"name"`
	// Passphrase is the WPA2-PSK passphrase (8 to 63 characters); empty for
	// an open network; `${NAME}` or `file:PATH` resolve at build time.
	Passphrase string `yaml:"passphrase,omitempty" json:"passphrase,omitempty"`
}

// Interface is the static or DHCP configuration of one interface (extension).
type Interface struct {
	// DHCP asks for the address by DHCP, the default when address is empty.
	DHCP bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// Address is the static address in CIDR form, e.g. `192.168.1.10/24`.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Gateway is the default route's gateway.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// DNS are the DNS servers of this interface.
	DNS []string `yaml:"dns,omitempty" json:"dns,omitempty"`
}

// Roles, as derived by Config.Role.
const (
	RoleClusterInit = "cluster-init"
	RoleServer      = "server"
	RoleAgent       = "agent"
)

// Role is the node's k3s role: the shorthand when set, else the first
// k3s_args item, else agent when server_url is set, else a single server.
func (c *Config) Role() string {
	if c.K3OS.Role != "" {
		return c.K3OS.Role
	}
	if len(c.K3OS.K3sArgs) > 0 && (c.K3OS.K3sArgs[0] == RoleServer || c.K3OS.K3sArgs[0] == RoleAgent) {
		return c.K3OS.K3sArgs[0]
	}
	if c.K3OS.ServerURL != "" {
		return RoleAgent
	}
	return RoleServer
}
