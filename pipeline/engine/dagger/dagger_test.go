package dagger

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dagger.io/dagger"
	"github.com/sirupsen/logrus"

	"github.com/k3os-rpi/k3os-rpi4/pipeline/plan"
	"github.com/k3os-rpi/k3os-rpi4/pipeline/step"
	"github.com/k3os-rpi/k3os-rpi4/settings"
)

// fakeConn points the SDK at an httptest server (engineconn.EngineConn).
type fakeConn struct {
	*http.Client
	host string
}

func (c *fakeConn) Host() string { return c.host }
func (c *fakeConn) Close() error { return nil }

// fakeEngine records each GraphQL query and answers with data nested like
// the query's (linear) selection chain.
type fakeEngine struct {
	mu      sync.Mutex
	queries []string
}

var (
	argsRe  = regexp.MustCompile(`\((?:[^()"]|"(?:[^"\\]|\\.)*")*\)`)
	fragRe  = regexp.MustCompile(`\.\.\. on \w+`)
	pathArg = regexp.MustCompile(`path:"((?:[^"\\]|\\.)*)"`)
)

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Query string }
	json.NewDecoder(r.Body).Decode(&req)
	f.mu.Lock()
	f.queries = append(f.queries, req.Query)
	n := len(f.queries)
	f.mu.Unlock()
	q := strings.TrimPrefix(req.Query, "query Query ")
	fields := strings.FieldsFunc(fragRe.ReplaceAllString(argsRe.ReplaceAllString(q, ""), ""),
		func(r rune) bool { return r == '{' || r == '}' || r == ' ' })
	var val any = "fake-id-" + strconv.Itoa(n)
	if fields[len(fields)-1] == "export" {
		m := pathArg.FindAllStringSubmatch(q, -1)
		val = m[len(m)-1][1]
	}
	for i := len(fields) - 1; i >= 0; i-- {
		val = map[string]any{fields[i]: val}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": val})
}

func fakeEngineFor(t *testing.T, base Base) (*Engine, *fakeEngine) {
	fe := &fakeEngine{}
	srv := httptest.NewServer(fe)
	t.Cleanup(srv.Close)
	e := &Engine{Base: base, Log: logrus.New(), Mirror: "http://mirror.example/debian",
		Pins: step.ToolchainLock{plan.GoToolchain.Key(): {"golang-1.26-go": "1.26.11-1~bpo13+1", "ca-certificates": "20250419+deb13u1"}},
		Connect: func(ctx context.Context, log io.Writer) (*dagger.Client, error) {
			return dagger.Connect(ctx, dagger.WithConn(&fakeConn{Client: srv.Client(), host: srv.Listener.Addr().String()}))
		},
		Tarball: func(ctx context.Context, tc step.Toolchain) (string, error) {
			return "/cache/" + tc.Key() + ".oci.tar", nil
		},
	}
	t.Cleanup(func() { e.Close() })
	return e, fe
}

// The agent step, as the pipeline defines it, becomes this Dagger query.
func TestAgentStepQuery(t *testing.T) {
	src := t.TempDir()
	mod := t.TempDir()
	project, _ := filepath.Abs("../../..")
	p, err := plan.New(plan.Options{Project: project, Version: "1.2.3", Flavour: settings.KernelReduced, K3s: settings.K3sNone, Mirror: "http://mirror.example/debian"})
	if err != nil {
		t.Fatal(err)
	}
	agent := p.Agent
	for _, base := range []Base{BaseRegistry, BaseImport} {
		t.Run(string(base), func(t *testing.T) {
			e, fe := fakeEngineFor(t, base)
			out := t.TempDir()
			if err := e.Run(context.Background(), agent, map[string]string{"src": src, "mod": mod}, out, io.Discard); err != nil {
				t.Fatal(err)
			}
			final := fe.queries[len(fe.queries)-1]
			want := []string{
				`container(platform:"linux/amd64")`,
				`withMountedDirectory(`, `path:"/in/src"`, `path:"/in/mod"`,
				`withMountedCache(`, `path:"/cache/go-build"`,
				`withWorkdir(path:"/work")`,
				`name:"SOURCE_DATE_EPOCH"`, `value:"` + step.SourceDateEpoch + `"`,
				`name:"GOARCH"`, `value:"arm64"`, `name:"GOPROXY"`, `value:"off"`, `name:"VERSION"`, `value:"1.2.3"`,
				// The contract: no network, inputs read-only (confine).
				`args:["env","K3OS_SYS_MOUNT=165","unshare","--net","--","perl","-e",`, `insecureRootCapabilities:true`,
				`-X main.version=$VERSION`,
				`directory(path:"/out")`, `export(path:"` + out + `")`,
			}
			if base == BaseRegistry {
				// The registry base installs the versions the lock pins.
				want = append(want, `from(address:"`+DebianImages["trixie"]+`")`, `apt-get install`, `golang-1.26-go=1.26.11-1~bpo13+1`,
					`deb http://mirror.example/debian trixie-backports main`)
			} else {
				want = append(want, `import(source:"fake-id-`)
			}
			for _, w := range want {
				if !strings.Contains(final, w) {
					t.Errorf("query lacks %s:\n%s", w, final)
				}
			}
			all := strings.Join(fe.queries, "\n")
			for _, w := range []string{`cacheVolume(key:"k3os-go-build")`, `host{directory(`, `include:["go.mod","go.mod/**"`} {
				if !strings.Contains(all, w) {
					t.Errorf("queries lack %s:\n%s", w, all)
				}
			}
			if base == BaseImport && !strings.Contains(all, `host{file(path:"/cache/`+agent.Toolchain.Key()+`.oci.tar")`) {
				t.Errorf("import base does not read the tools root tarball:\n%s", all)
			}
		})
	}
}

func TestUnavailableFailsFast(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	start := time.Now()
	err := Available(context.Background(), Env{CLIBin: filepath.Join(t.TempDir(), "no-dagger")})
	if err == nil || !strings.Contains(err.Error(), "_EXPERIMENTAL_DAGGER_CLI_BIN") {
		t.Errorf("Available() = %v", err)
	}
	// An engine named by the runner host that does not answer.
	bin := filepath.Join(t.TempDir(), "dagger")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	err = Available(context.Background(), Env{CLIBin: bin, RunnerHost: "unix://" + filepath.Join(t.TempDir(), "engine.sock")})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("Available() = %v", err)
	}
	err = Available(context.Background(), Env{CLIBin: bin})
	if err == nil || !strings.Contains(err.Error(), "install Docker") {
		t.Errorf("Available() = %v", err)
	}
	// A CLI on PATH is named, not used behind the user's back.
	t.Setenv("PATH", filepath.Dir(bin))
	err = Available(context.Background(), Env{})
	if err == nil || !strings.Contains(err.Error(), "_EXPERIMENTAL_DAGGER_CLI_BIN="+bin) {
		t.Errorf("Available() = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}
