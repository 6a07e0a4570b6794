package apply

import (
	"testing"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestEnvironment(t *testing.T) {
	tests := []struct {
		name string
		old  string // "" for no file
		env  map[string]string
		want string // "" for no file
	}{
		{"no file, no variables", "", nil, ""},
		{"new file", "", map[string]string{"B": "two words", "A": "1"},
			envBegin + "\nA=1\nB=\"two words\"\n" + envEnd + "\n"},
		{"keeps other lines, takes over ours", "PATH=/usr/bin\nHTTP_PROXY=old\n",
			map[string]string{"HTTP_PROXY": "http://proxy:3128"},
			"PATH=/usr/bin\n" + envBegin + "\nHTTP_PROXY=http://proxy:3128\n" + envEnd + "\n"},
		{"drops variables the config dropped", "LANG=C.UTF-8\n" + envBegin + "\nOLD=1\n" + envEnd + "\n",
			map[string]string{"NEW": "$HOME"},
			"LANG=C.UTF-8\n" + envBegin + "\nNEW='$HOME'\n" + envEnd + "\n"},
		{"no variables left", "LANG=C.UTF-8\n" + envBegin + "\nOLD=1\n" + envEnd + "\n", nil, "LANG=C.UTF-8\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Environment: tt.env}})
			if tt.old != "" {
				writeTestFile(t, n.Root, environmentFile, tt.old)
			}
			n.step(t, environmentStep)
			n.step(t, environmentStep)
			if got := n.read(t, environmentFile); got != tt.want {
				t.Errorf("/etc/environment = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuoteValue(t *testing.T) {
	tests := []struct {
		v, want string
		err     bool
	}{
		{"plain/value:1,2", "plain/value:1,2", false},
		{"", `""`, false},
		{"two words", `"two words"`, false},
		{`$HOME and "q"`, `'$HOME and "q"'`, false},
		{`it's`, `"it's"`, false},
		{`it's $5`, "", true},
		{"a\nb", "", true},
	}
	for _, tt := range tests {
		got, err := quoteValue(tt.v)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("quoteValue(%q) = %q, %v, want %q (error %v)", tt.v, got, err, tt.want, tt.err)
		}
	}
}
