package kconfig

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{
			name: "empty",
			in:   "",
			want: Config{},
		},
		{
			name: "bool tristate and not set",
			in:   "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=n\n",
			want: Config{
				"CONFIG_A": {Value: "y", Pos: Pos{Line: 1}},
				"CONFIG_B": {Value: "m", Pos: Pos{Line: 2}},
				"CONFIG_C": {Value: "n", Pos: Pos{Line: 3}},
				"CONFIG_D": {Value: "n", Pos: Pos{Line: 4}},
			},
		},
		{
			name: "comments and blank lines are skipped",
			in:   "#\n# Automatically generated file; DO NOT EDIT.\n\n  \n# why: CONFIG_A is needed\nCONFIG_A=y\n#CONFIG_B is not set\n# CONFIG_C is not set, because\n",
			want: Config{
				"CONFIG_A": {Value: "y", Pos: Pos{Line: 6}},
			},
		},
		{
			name: "strings numbers and hex keep their text",
			in:   "CONFIG_LOCALVERSION=\"-k3os\"\nCONFIG_EMPTY=\"\"\nCONFIG_ESC=\"a \\\"b\\\" # c\"\nCONFIG_LOG_BUF_SHIFT=17\nCONFIG_BASE=0x1000\n",
			want: Config{
				"CONFIG_LOCALVERSION":  {Value: `"-k3os"`, Pos: Pos{Line: 1}},
				"CONFIG_EMPTY":         {Value: `""`, Pos: Pos{Line: 2}},
				"CONFIG_ESC":           {Value: `"a \"b\" # c"`, Pos: Pos{Line: 3}},
				"CONFIG_LOG_BUF_SHIFT": {Value: "17", Pos: Pos{Line: 4}},
				"CONFIG_BASE":          {Value: "0x1000", Pos: Pos{Line: 5}},
			},
		},
		{
			name: "later line wins",
			in:   "CONFIG_A=m\nCONFIG_A=y\n",
			want: Config{"CONFIG_A": {Value: "y", Pos: Pos{Line: 2}}},
		},
		{
			name: "CRLF and trailing space",
			in:   "CONFIG_A=y\r\nCONFIG_B=m  \r\n",
			want: Config{
				"CONFIG_A": {Value: "y", Pos: Pos{Line: 1}},
				"CONFIG_B": {Value: "m", Pos: Pos{Line: 2}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d options %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			for n, w := range tt.want {
				if g, ok := got[n]; !ok || g != w {
					t.Errorf("%s = %+v (present %v), want %+v", n, g, ok, w)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"no equals", "CONFIG_A=y\nCONFIG_B\n", "k3s.config:2: want CONFIG_NAME=value"},
		{"no prefix", "A=y\n", "k3s.config:1: bad option name \"A\""},
		{"bad char in name", "CONFIG_A-B=y\n", "bad option name \"CONFIG_A-B\""},
		{"prefix only", "CONFIG_=y\n", "bad option name"},
		{"empty value", "\n\nCONFIG_A=\n", "k3s.config:3: CONFIG_A has no value"},
		{"trailing comment", "CONFIG_A=y # built in\n", "k3s.config:1: CONFIG_A: unexpected ' '"},
		{"unterminated string", "CONFIG_S=\"abc\n", "unterminated string"},
		{"text after string", "CONFIG_S=\"abc\" x\n", "text after the closing quote"},
		{"leading space", "CONFIG_A=y\n  CONFIG_B=m\n", "k3s.config:2: line starts with white space"},
		{"stray quote", "CONFIG_S=ab\"c\n", "unexpected '\"'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNamed(strings.NewReader(tt.in), "k3s.config")
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSatisfies(t *testing.T) {
	tests := []struct {
		want, got string
		ok        bool
	}{
		{"y", "y", true},
		{"y", "m", false},
		{"y", "n", false},
		{"y", "", false},
		{"m", "y", true},
		{"m", "m", true},
		{"m", "n", false},
		{"m", "", false},
		{"n", "", true},
		{"n", "n", true},
		{"n", "m", false},
		{"n", "y", false},
		{`"x"`, `"x"`, true},
		{`"x"`, `"y"`, false},
		{`"x"`, "", false},
		{"17", "17", true},
		{"17", "18", false},
	}
	for _, tt := range tests {
		if got := Satisfies(tt.got, tt.want); got != tt.ok {
			t.Errorf("Satisfies(got %q, want %q) = %v, want %v", tt.got, tt.want, got, tt.ok)
		}
	}
}

func mustParse(t *testing.T, name, s string) Config {
	t.Helper()
	c, err := ParseNamed(strings.NewReader(s), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheck(t *testing.T) {
	frag := "# needed\nCONFIG_Y=y\nCONFIG_M=m\n# CONFIG_OFF is not set\nCONFIG_S=\"abc\"\n"
	tests := []struct {
		name  string
		final string
		want  []string
	}{
		{
			name:  "all satisfied",
			final: "CONFIG_Y=y\nCONFIG_M=m\nCONFIG_S=\"abc\"\n",
		},
		{
			name:  "m satisfied by y and off by is-not-set",
			final: "CONFIG_Y=y\nCONFIG_M=y\n# CONFIG_OFF is not set\nCONFIG_S=\"abc\"\n",
		},
		{
			name:  "y became m",
			final: "CONFIG_Y=m\nCONFIG_M=m\nCONFIG_S=\"abc\"\n",
			want:  []string{"CONFIG_Y: required y (frag.config:2), final .config has m"},
		},
		{
			name:  "everything wrong",
			final: "# CONFIG_Y is not set\nCONFIG_OFF=m\nCONFIG_S=\"abd\"\n",
			want: []string{
				"CONFIG_Y: required y (frag.config:2), final .config has it unset",
				"CONFIG_M: required y or m (frag.config:3), final .config has it unset",
				"CONFIG_OFF: required unset (frag.config:4), final .config has m",
				`CONFIG_S: required "abc" (frag.config:5), final .config has "abd"`,
			},
		},
	}
	req := mustParse(t, "frag.config", frag)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := Check(mustParse(t, ".config", tt.final), req)
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestRequired(t *testing.T) {
	a := mustParse(t, "a.config", "CONFIG_X=m\nCONFIG_Y=y\nCONFIG_Z=y\n")
	b := mustParse(t, "b.config", "CONFIG_X=y\nCONFIG_Y=m\nCONFIG_W=m\nCONFIG_Z=y\n")
	req, err := Required(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CONFIG_X": "y b.config:1", // the stricter request wins
		"CONFIG_Y": "y a.config:2",
		"CONFIG_Z": "y a.config:3", // the same request: the first position
		"CONFIG_W": "m b.config:3",
	}
	if len(req) != len(want) {
		t.Errorf("got %v, want %v", req, want)
	}
	for n, w := range want {
		if g := req[n].Value + " " + req[n].Pos.String(); g != w {
			t.Errorf("%s = %s, want %s", n, g, w)
		}
	}
}

func TestRequiredConflicts(t *testing.T) {
	a := mustParse(t, "a.config", "CONFIG_X=y\nCONFIG_S=\"a\"\nCONFIG_OK=y\n")
	b := mustParse(t, "b.config", "# CONFIG_X is not set\nCONFIG_S=\"b\"\nCONFIG_OK=m\n")
	_, err := Required(a, b)
	if err == nil {
		t.Fatal("no error for contradicting fragments")
	}
	for _, w := range []string{
		"CONFIG_X: a.config:1 asks for y but b.config:1 asks for unset",
		`CONFIG_S: a.config:2 asks for "a" but b.config:2 asks for "b"`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "CONFIG_OK") {
		t.Errorf("y and m are not a conflict: %v", err)
	}
}

func TestProblemMessage(t *testing.T) {
	p := Problem{Name: "CONFIG_MEMCG", Want: "y", Pos: Pos{File: "kernel/config/k3s.config", Line: 12}}
	want := "CONFIG_MEMCG: required y (kernel/config/k3s.config:12), final .config has it unset"
	if p.String() != want || p.Error() != want {
		t.Errorf("got %q, want %q", p.String(), want)
	}
	if got := (Pos{Line: 3}).String(); got != "line 3" {
		t.Errorf("Pos without file = %q", got)
	}
}
