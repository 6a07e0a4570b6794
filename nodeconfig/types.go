// Package nodeconfig is the schema of a node's config file (the k3OS
// config.yaml format plus a few documented extensions), its lenient parser
// with file:line:col reports, its validation, and the rules of a cluster's
// config directory (config/<MAC>.yaml, default.yaml, cluster.yaml).
//
// The Go types are the source of truth: the JSON Schema and the docs are
// generated from them.
package nodeconfig

// Config is one node's configuration: the top level of a k3OS config.yaml.
type Config struct {
	// Hostname of the node (a DNS name; FQDNs allowed).
	Hostname string `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	// SSHAuthorizedKeys for user rancher: OpenSSH public keys, "github:USER",
	// "gitlab:USER" or an https URL (fetched once the network is up).
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty" json:"ssh_authorized_keys,omitempty"`
	// WriteFiles are written on every boot, before boot_cmd.
	WriteFiles []File `yaml:"write_files,omitempty" json:"write_files,omitempty"`
	// InitCmd runs in the initramfs stage, chrooted into the new root before it is entered.
	InitCmd []string `yaml:"init_cmd,omitempty" json:"init_cmd,omitempty"`
	// BootCmd runs at boot, before the network is up.
	BootCmd []string `yaml:"boot_cmd,omitempty" json:"boot_cmd,omitempty"`
	// RunCmd runs once the network is online.
	RunCmd []string `yaml:"run_cmd,omitempty" json:"run_cmd,omitempty"`
	// K3OS holds the OS and k3s settings.
	K3OS K3OS `yaml:"k3os,omitempty" json:"k3os,omitempty"`
}

// File is one entry of write_files.
type File struct {
	// Path of the file; a relative path is taken from / (as k3OS did).
	Path string `yaml:"path" json:"path"`
	// Content of the file, encoded as Encoding says.
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	// Encoding of Content: "" (plain), b64/base64, gz/gzip, gz+b64/gzip+base64.
	Encoding string `yaml:"encoding,omitempty" json:"encoding,omitempty" jsonschema:"enum=,enum=b64,enum=base64,enum=gz,enum=gzip,enum=gz+b64,enum=gzip+base64,enum=gz+base64,enum=gzip+b64"`
	// Owner as "user" or "user:group"; default root:root.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`
	// Permissions as an octal string; default 0644.
	Permissions string `yaml:"permissions,omitempty" json:"permissions,omitempty"`
}

// K3OS is the k3os: section.
type K3OS struct {
	// DataSources names cloud metadata providers (k3OS). Pi images have no
	// metadata service; the key is accepted and reported as unused.
	DataSources []string `yaml:"data_sources,omitempty" json:"data_sources,omitempty"`
	// Modules are kernel modules to load at boot, "name [param=value ...]".
	Modules []string `yaml:"modules,omitempty" json:"modules,omitempty"`
	// Sysctl maps sysctl keys to values, applied at boot.
	Sysctl map[string]string `yaml:"sysctl,omitempty" json:"sysctl,omitempty"`
	// NTPServers replace the default time servers.
	NTPServers []string `yaml:"ntp_servers,omitempty" json:"ntp_servers,omitempty"`
	// DNSNameservers are used for every interface (IP addresses).
	DNSNameservers []string `yaml:"dns_nameservers,omitempty" json:"dns_nameservers,omitempty"`
	// Wifi networks to join.
	Wifi []Wifi `yaml:"wifi,omitempty" json:"wifi,omitempty"`
	// Password of user rancher: a crypt hash ("$6$...") or, with a warning,
	// plain text (hashed on the node). Also "${ENV}" or "file:PATH" at build time.
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// ServerURL of the k3s server to join (https://host:6443). Setting it
	// makes the node an agent unless Role says otherwise.
	ServerURL string `yaml:"server_url,omitempty" json:"server_url,omitempty"`
	// Token shared by the cluster; "${ENV}" or "file:PATH" resolve at build time.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// Labels put on the k3s node.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Taints put on the k3s node, "key=value:Effect".
	Taints []string `yaml:"taints,omitempty" json:"taints,omitempty"`
	// K3sArgs are passed to k3s; a first item "server" or "agent" sets the role.
	K3sArgs []string `yaml:"k3s_args,omitempty" json:"k3s_args,omitempty"`
	// Environment is merged into /etc/environment and k3s's environment.
	Environment map[string]string `yaml:"environment,omitempty" json:"environment,omitempty"`
	// Install is read by the k3OS ISO installer only; ignored here.
	Install map[string]any `yaml:"install,omitempty" json:"install,omitempty"`

	// Extensions that k3OS lacked.

	// Role is a shorthand (extension): "cluster-init" (first server, embedded
	// etcd), "server" (joins server_url as a server, or a single server when
	// server_url is empty), or "agent".
	Role string `yaml:"role,omitempty" json:"role,omitempty" jsonschema:"enum=cluster-init,enum=server,enum=agent"`
	// DatastoreEndpoint (extension) is an external control-plane database:
	// postgres://, mysql:// or https:// (etcd).
	DatastoreEndpoint string `yaml:"datastore_endpoint,omitempty" json:"datastore_endpoint,omitempty"`
	// Network (extension) configures interfaces by name; interfaces not
	// listed use DHCP.
	Network map[string]Interface `yaml:"network,omitempty" json:"network,omitempty"`
}

// Wifi is one Wi-Fi network.
type Wifi struct {
	// Name is the SSID.
	Name string `yaml:"name" json:"name"`
	// Passphrase (WPA2-PSK, 8 to 63 characters); empty for an open network.
	Passphrase string `yaml:"passphrase,omitempty" json:"passphrase,omitempty"`
}

// Interface is the static or DHCP configuration of one interface (extension).
type Interface struct {
	// DHCP turns DHCP on; it is the default when Address is empty.
	DHCP bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// Address in CIDR form, e.g. 192.168.1.10/24.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Gateway for the default route.
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	// DNS servers for this interface.
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
