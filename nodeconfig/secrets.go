package nodeconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// A secret reference stands for the whole value: ${NAME} (an environment
// variable at build time) or file:PATH (relative to the config directory).
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

func isRef(v string) bool {
	return strings.HasPrefix(v, "${") || strings.HasPrefix(v, "file:")
}

func checkRef(v string) string {
	switch {
	case strings.HasPrefix(v, "${") && !envRef.MatchString(v):
		return fmt.Sprintf("%q is not a valid ${NAME} reference", v)
	case v == "file:":
		return "file: reference without a path"
	}
	return ""
}

// Lookup reads a variable of the build's environment (os.LookupEnv).
type Lookup func(name string) (string, bool)

// Secrets resolves secret references at build time.
type Secrets struct {
	// Dir is where file: paths are relative to (the config directory).
	Dir string
	// Env resolves ${NAME}; the build passes the environment it runs in.
	Env Lookup
}

// Resolve replaces the references in token, agent_token, password,
// datastore_endpoint and the Wi-Fi passphrases with their values. It
// reports what cannot be resolved.
func (s Secrets) Resolve(d *Doc) Report {
	var r Report
	resolve := func(path string, v *string) {
		file, line, col := d.at(path)
		fail := func(msg, hint string) {
			r = append(r, Issue{File: file, Line: line, Col: col, Severity: Error, Path: path, Msg: msg, Hint: hint})
		}
		switch {
		case envRef.MatchString(*v):
			name := envRef.FindStringSubmatch(*v)[1]
			var val string
			ok := false
			if s.Env != nil {
				val, ok = s.Env(name)
			}
			if !ok || val == "" {
				fail(fmt.Sprintf("environment variable %s is not set", name), "export "+name+" before the build (in CI, from a repository secret)")
				return
			}
			*v = val
		case strings.HasPrefix(*v, "file:"):
			p := strings.TrimPrefix(*v, "file:")
			if !filepath.IsAbs(p) {
				p = filepath.Join(s.Dir, p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				fail(fmt.Sprintf("cannot read secret: %v", err), "create the file, or write ${NAME}")
				return
			}
			*v = strings.TrimRight(string(b), "\r\n")
		}
	}
	k := &d.Config.K3OS
	resolve("k3os.token", &k.Token)
	resolve("k3os.agent_token", &k.AgentToken)
	resolve("k3os.password", &k.Password)
	resolve("k3os.datastore_endpoint", &k.DatastoreEndpoint)
	for i := range k.Wifi {
		resolve(fmt.Sprintf("k3os.wifi[%d].passphrase", i), &k.Wifi[i].Passphrase)
	}
	return r
}
