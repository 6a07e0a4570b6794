// Package settings is the one table of the build's options: each
// environment variable the targets read, its default, what it does and
// where it applies. The Mage targets read the environment once, through
// Load, and hand the values down; no other package reads the environment.
package settings

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Settings are the options of one run of a target.
type Settings struct {
	// Project is the project's directory (not a setting: where the
	// targets run).
	Project string

	Kernel, K3s, K3sImages, Engine, DaggerBase string
	ConfigDir, Version, Mirror                 string
	Cache                                      string
	// PerNodeCards makes one image per node config (CARDS=node).
	PerNodeCards bool
	// FlashInternal lets flash write a disk that is not removable.
	FlashInternal bool
	// UpgradeKey is the upgrade signing key's file ("" for none); its
	// public key is UpgradeKey + ".pub". UpgradeKeyPassword unlocks an
	// encrypted one. UpgradeTrust are more public key files the image
	// trusts. UpgradeContent is what a bundle carries.
	UpgradeKey, UpgradeKeyPassword string
	UpgradeTrust                   []string
	UpgradeContent                 string
	// ReleaseURL is where a release's files are published.
	ReleaseURL string
	// RolloutDrain cordons and drains each node before its upgrade.
	RolloutDrain bool
	// GoEnv holds the Go module settings that were set, for the step that
	// downloads the agent's modules.
	GoEnv map[string]string
	// Dagger holds the Dagger SDK's own variables that were set.
	Dagger DaggerEnv

	VMTestCases     []string
	VMTestKeep      bool
	AllPowerCuts    bool
	RequireK3sReady bool
	// Plain is set where no live progress line belongs (CI).
	Plain bool
}

// DaggerEnv are the variables with which the Dagger SDK finds an engine,
// and the cache directory where it keeps a CLI it downloaded.
type DaggerEnv struct {
	SessionPort, RunnerHost, CLIBin string
	CacheHome                       string
}

// Setting is one row of the table.
type Setting struct {
	Name string
	// Default is the value of an unset variable; DefaultDoc says it in
	// words where it is not a plain value (computed from the machine).
	Default, DefaultDoc string
	// TestDefault, when set, is the default of the test targets (test,
	// boottest) instead.
	TestDefault string
	Doc         string
	// Applies names the targets that read it.
	Applies string
	// Choices are the valid values (an entry ending in ':' allows any
	// value with that prefix); none means any value.
	Choices  []string
	computed func(project string, env Lookup) (string, error)
	set      func(s *Settings, v string) error
}

// Kernel flavours (KERNEL).
const (
	KernelPi      = "pi"      // our Pi-first config: the default
	KernelFull    = "full"    // Debian's whole arm64 config with our fragments (hours on 2 cores)
	KernelDebian  = "debian"  // Debian's prebuilt kernel
	KernelReduced = "reduced" // allnoconfig and the k3s fragments: QEMU virt only, the build-time yardstick
)

// K3s inputs (K3S).
const (
	K3sRelease = "release"
	K3sNone    = "none"
)

// Table is every setting, in the order the docs list them.
var Table = []Setting{
	{Name: "KERNEL", Default: KernelPi, Choices: []string{KernelPi, KernelFull, KernelDebian, KernelReduced},
		Applies: "image, kernel:build, test, boottest, bench, benchKernel",
		Doc:     "the kernel: `pi` (our Pi 4 config of Debian's linux-source-6.12: the Pi 4 family, what k3s and its common add-ons use, QEMU virt; minutes to build, cached), `full` (Debian's whole arm64 config with our fragments, for drivers beyond the Pi's own: about 2.5 h on 2 cores), `debian` (Debian's prebuilt kernel: no build, but no try-once boot for upgrades), `reduced` (QEMU only: the yardstick of build times)",
		set:     func(s *Settings, v string) error { s.Kernel = v; return nil }},
	{Name: "K3S", Default: K3sRelease, TestDefault: K3sNone, Choices: []string{K3sRelease, K3sNone, "file:"},
		Applies: "image, rootFS, k3s:pin, test, boottest",
		Doc:     "the k3s in the image: `release` (the one pinned in rootfs/k3s.lock, downloaded and checked), `file:PATH` (offline: the release's k3s-arm64, or a k3s of your own, a binary or a directory, pinned with `k3s:pin`; see docs/k3s.md), `none` (no k3s)",
		set:     func(s *Settings, v string) error { s.K3s = v; return nil }},
	{Name: "K3S_IMAGES", Default: K3sRelease, Choices: []string{K3sRelease, K3sNone, "file:"},
		Applies: "image, upgrade, test, boottest, k3s:pin",
		Doc:     "the container images k3s imports at start (kept with the version on the state partition): `release` (the locked release's `k3s-airgap-images-arm64.tar.zst`, pinned in rootfs/k3s.lock, downloaded and checked), `file:PATH` (a tarball or a directory of them, pinned with `k3s:pin`; air-gapped builds), `none` (the node pulls what it needs); ignored with K3S=none. The cluster's own images go in CONFIG_DIR/images (docs/k3s.md)",
		set:     func(s *Settings, v string) error { s.K3sImages = v; return nil }},
	{Name: "ENGINE", Default: "auto", Choices: []string{"auto", "host", "dagger"},
		Applies: "every target that builds",
		Doc:     "where steps run: `auto` (Dagger when an engine can be had, else the host), `host`, `dagger`; see docs/engines.md",
		set:     func(s *Settings, v string) error { s.Engine = v; return nil }},
	{Name: "DAGGER_BASE", Default: "registry", Choices: []string{"registry", "import"},
		Applies: "ENGINE=dagger",
		Doc:     "where Dagger's toolchain containers come from: `registry` (the pinned Debian image, packages from the mirror) or `import` (the host engine's tools roots as OCI tarballs: no registry needed)",
		set:     func(s *Settings, v string) error { s.DaggerBase = v; return nil }},
	{Name: "CONFIG_DIR", Default: "config",
		Applies: "validate, image, bench",
		Doc:     "the cluster's config directory: `<MAC>.yaml` per node, `default.yaml`, `cluster.yaml`; `none`: an image with no cluster, every node boots unconfigured (releases)",
		set:     func(s *Settings, v string) error { s.ConfigDir = v; return nil }},
	{Name: "CARDS", Default: "cluster", Choices: []string{"cluster", "node"},
		Applies: "image",
		Doc:     "`cluster`: one image for every node; `node`: one image per node config (`dist/<hostname>.img`), each holding that node's config alone, for cards flashed one by one",
		set:     func(s *Settings, v string) error { s.PerNodeCards = v == "node"; return nil }},
	{Name: "VERSION", DefaultDoc: "the VERSION file",
		Applies:  "image, agent, rootFS",
		Doc:      "the version of the image, its root and its agent",
		computed: versionFile, set: setVersion},
	{Name: "DEBIAN_MIRROR", Default: "http://deb.debian.org/debian",
		Applies: "every target that builds",
		Doc:     "the Debian mirror for tools roots, locks and the root's packages (the locks pin checksums, so any mirror gives the same bytes)",
		set: func(s *Settings, v string) error {
			if !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
				return errors.New("want an http:// or https:// URL")
			}
			s.Mirror = strings.TrimSuffix(v, "/")
			return nil
		}},
	{Name: "K3OS_CACHE", DefaultDoc: "$XDG_CACHE_HOME/k3os-rpi4, else ~/.cache/k3os-rpi4", computed: cacheDir,
		Applies: "every target that builds, clean, cache:prune",
		Doc:     "the build cache: step outputs, tools roots, downloads, ccache",
		set:     func(s *Settings, v string) error { s.Cache = v; return nil }},
	{Name: "GOPROXY", DefaultDoc: "Go's default", Applies: "agent (the module download)", Doc: "the Go module proxy for the agent's modules",
		set: goEnv("GOPROXY")},
	{Name: "GOSUMDB", DefaultDoc: "Go's default", Applies: "agent (the module download)", Doc: "the checksum database for the agent's modules",
		set: goEnv("GOSUMDB")},
	{Name: "GONOSUMDB", DefaultDoc: "Go's default", Applies: "agent (the module download)", Doc: "modules not checked against the checksum database",
		set: goEnv("GONOSUMDB")},
	{Name: "GOPRIVATE", DefaultDoc: "Go's default", Applies: "agent (the module download)", Doc: "modules fetched directly, not through the proxy",
		set: goEnv("GOPRIVATE")},
	{Name: "UPGRADE_KEY", Default: "none", Choices: []string{"none", "file:"},
		Applies: "image, try, upgrade, keygen, rollout",
		Doc:     "the upgrade signing key: `file:PATH`, a minisign key pair (PATH secret, PATH.pub public; `go tool mage keygen` makes one). `upgrade` signs bundles with PATH; `image` puts PATH.pub on the card, the key its nodes accept upgrades signed with. `none`: images trust no key (their nodes upgrade only by reflashing); see docs/upgrades.md",
		set: func(s *Settings, v string) error {
			s.UpgradeKey, _ = strings.CutPrefix(v, "file:")
			if v == "none" {
				s.UpgradeKey = ""
			}
			return nil
		}},
	{Name: "UPGRADE_KEY_PASSWORD", DefaultDoc: "unset",
		Applies: "upgrade, keygen",
		Doc:     "the password of an encrypted UPGRADE_KEY (keygen encrypts with it when set); a secret, never logged",
		set:     func(s *Settings, v string) error { s.UpgradeKeyPassword = v; return nil }},
	{Name: "UPGRADE_TRUST", DefaultDoc: "unset",
		Applies: "image, try",
		Doc:     "more public keys (files, comma-separated) the card's nodes accept upgrades signed with, e.g. the next key while you rotate",
		set: func(s *Settings, v string) error {
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					s.UpgradeTrust = append(s.UpgradeTrust, f)
				}
			}
			return nil
		}},
	{Name: "UPGRADE_CONTENT", Default: "system", Choices: []string{"system", "config", "all"},
		Applies: "upgrade, rollout",
		Doc:     "what an upgrade bundle carries: `system` (the system version: kernel, boot files, root, modules; one bundle for every node), `config` (the nodes' configs of CONFIG_DIR only: a small bundle per node, holding its config alone), `all` (both, per node)",
		set:     func(s *Settings, v string) error { s.UpgradeContent = v; return nil }},
	{Name: "ROLLOUT_DRAIN", Default: "0", Choices: []string{"0", "1"},
		Applies: "rollout",
		Doc:     "`1`: cordon and drain each node (from a server) before its upgrade, uncordon it once Ready on the new version",
		set:     func(s *Settings, v string) error { s.RolloutDrain = v == "1"; return nil }},
	{Name: "RELEASE_URL", DefaultDoc: "unset",
		Applies: "image (CONFIG_DIR=none)",
		Doc:     "where the release's files are published (e.g. `https://github.com/OWNER/REPO/releases/download/v1.2.3`): the image job then writes `dist/k3os-rpi4-arm64.rpi-imager.json`, a Raspberry Pi Imager repository naming the image",
		set: func(s *Settings, v string) error {
			if v != "" && !strings.HasPrefix(v, "https://") {
				return errors.New("want an https:// URL")
			}
			s.ReleaseURL = v
			return nil
		}},
	{Name: "K3OS_VMTEST_CASES", DefaultDoc: "every case",
		Applies: "test, boottest",
		Doc:     "the boot cases to run, comma-separated (`go tool mage boottest` lists them; an unknown name fails before anything is built)",
		set: func(s *Settings, v string) error {
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" {
					s.VMTestCases = append(s.VMTestCases, c)
				}
			}
			return nil
		}},
	{Name: "K3OS_VMTEST_KEEP", Default: "0", Choices: []string{"0", "1"},
		Applies: "test, boottest",
		Doc:     "`1`: a failed case's machines stay up until interrupted, with the SSH command to enter them",
		set:     func(s *Settings, v string) error { s.VMTestKeep = v == "1"; return nil }},
	{Name: "K3OS_VMTEST_POWER_CUTS", Default: "phases", Choices: []string{"phases", "all"},
		Applies: "test, boottest",
		Doc:     "the power-cut case's points: `phases` (one per phase of an upgrade: 7 cuts, the CI run) or `all` (22 cuts spread over the whole upgrade, about 15 minutes more; the release job)",
		set:     func(s *Settings, v string) error { s.AllPowerCuts = v == "all"; return nil }},
	{Name: "K3OS_REQUIRE_K3S_READY", Default: "0", Choices: []string{"0", "1"},
		Applies: "test, boottest",
		Doc:     "`1`: the k3s cases fail instead of being skipped when the image carries no k3s",
		set:     func(s *Settings, v string) error { s.RequireK3sReady = v == "1"; return nil }},
	{Name: "FLASH_INTERNAL", Default: "0", Choices: []string{"0", "1"},
		Applies: "flash",
		Doc:     "`1`: flash may write a disk that is not removable (an internal SD reader that says so, a card behind an odd bridge); mounted and system disks stay refused",
		set:     func(s *Settings, v string) error { s.FlashInternal = v == "1"; return nil }},
	{Name: "CI", DefaultDoc: "unset",
		Applies: "every target that builds",
		Doc:     "set (as CI services do): plain progress lines every 30 s instead of a live line",
		set:     func(s *Settings, v string) error { s.Plain = v != ""; return nil }},
	{Name: "DAGGER_SESSION_PORT", DefaultDoc: "unset", Applies: "ENGINE=dagger|auto",
		Doc: "Dagger's own: the session of a surrounding `dagger run`",
		set: func(s *Settings, v string) error { s.Dagger.SessionPort = v; return nil }},
	{Name: "_EXPERIMENTAL_DAGGER_RUNNER_HOST", DefaultDoc: "unset", Applies: "ENGINE=dagger|auto",
		Doc: "Dagger's own: a running engine, e.g. `unix:///run/dagger/engine.sock`",
		set: func(s *Settings, v string) error { s.Dagger.RunnerHost = v; return nil }},
	{Name: "_EXPERIMENTAL_DAGGER_CLI_BIN", DefaultDoc: "unset", Applies: "ENGINE=dagger|auto",
		Doc: "Dagger's own: the CLI the SDK starts its session with",
		set: func(s *Settings, v string) error { s.Dagger.CLIBin = v; return nil }},
}

func goEnv(name string) func(*Settings, string) error {
	return func(s *Settings, v string) error {
		if v == "" {
			return nil
		}
		if s.GoEnv == nil {
			s.GoEnv = map[string]string{}
		}
		s.GoEnv[name] = v
		return nil
	}
}

func setVersion(s *Settings, v string) error {
	if strings.ContainsAny(v, " \t\n/\\'\"$`") {
		return errors.New("use letters, digits, '.', '-' and '+'")
	}
	s.Version = v
	return nil
}

// Lookup is how Load reads a variable: os.LookupEnv, or a map in tests.
type Lookup func(name string) (string, bool)

// Load reads every setting of the table. test selects the test targets'
// defaults. Every invalid value is reported at once, each with the valid
// ones.
func Load(project string, env Lookup, test bool) (*Settings, error) {
	s := &Settings{Project: project}
	var errs []error
	for _, st := range Table {
		v, ok := env(st.Name)
		switch {
		case ok && v != "":
			if err := st.check(v); err != nil {
				errs = append(errs, err)
				continue
			}
		case st.computed != nil:
			var err error
			if v, err = st.computed(project, env); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", st.Name, err))
				continue
			}
		case test && st.TestDefault != "":
			v = st.TestDefault
		default:
			v = st.Default
		}
		if err := st.set(s, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%s: %w", st.Name, v, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.Dagger.CacheHome = xdgCache(env)
	return s, nil
}

// xdgCache is the user's cache directory, "" when there is none.
func xdgCache(env Lookup) string {
	if d, ok := env("XDG_CACHE_HOME"); ok && d != "" {
		return d
	}
	if h, ok := env("HOME"); ok && h != "" {
		return filepath.Join(h, ".cache")
	}
	return ""
}

func versionFile(project string, _ Lookup) (string, error) {
	b, err := os.ReadFile(filepath.Join(project, "VERSION"))
	if err != nil {
		return "", fmt.Errorf("unset, and the VERSION file cannot be read: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("unset, and the VERSION file is empty")
	}
	return v, nil
}

func cacheDir(_ string, env Lookup) (string, error) {
	if d := xdgCache(env); d != "" {
		return filepath.Join(d, "k3os-rpi4"), nil
	}
	return "", errors.New("unset, and neither XDG_CACHE_HOME nor HOME is set")
}

func (st Setting) check(v string) error {
	if len(st.Choices) == 0 {
		return nil
	}
	for _, c := range st.Choices {
		prefix := strings.HasSuffix(c, ":")
		if (!prefix && v == c) || (prefix && strings.HasPrefix(v, c) && len(v) > len(c)) {
			return nil
		}
	}
	var valid []string
	for _, c := range st.Choices {
		if strings.HasSuffix(c, ":") {
			c += "PATH"
		}
		valid = append(valid, c)
	}
	return fmt.Errorf("%s=%s: not a valid value; use one of: %s", st.Name, v, strings.Join(valid, ", "))
}

// Find returns the table's row of a variable.
func Find(name string) (Setting, bool) {
	i := slices.IndexFunc(Table, func(s Setting) bool { return s.Name == name })
	if i < 0 {
		return Setting{}, false
	}
	return Table[i], true
}

// Markdown writes the table as the README shows it.
func Markdown(w io.Writer) {
	fmt.Fprintln(w, "| variable | default | what it does | read by |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range Table {
		def := s.DefaultDoc
		if def == "" {
			def = "`" + s.Default + "`"
		}
		if s.TestDefault != "" {
			def += " (`" + s.TestDefault + "` for test, boottest)"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", s.Name, def, s.Doc, s.Applies)
	}
}
