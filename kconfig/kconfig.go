// Package kconfig reads Linux kernel configurations (.config files and the
// config fragments merged into them) and checks that a final .config still
// has what the fragments asked for.
//
// The kernel's own merge (scripts/kconfig/merge_config.sh, then make
// olddefconfig or allnoconfig) drops an option whose dependencies are not
// met, or turns a requested =y into =m, with at most a warning in a build
// log. Check finds those cases and names the fragment line that asked for
// the lost option:
//
//	CONFIG_MEMCG: required y (kernel/config/k3s.config:38), final .config has it unset
//
// A fragment line is read as a requirement on the final .config:
//
//	CONFIG_X=y             CONFIG_X must be y (built in)
//	CONFIG_X=m             CONFIG_X must be m or y (a module is enough)
//	# CONFIG_X is not set  CONFIG_X must be n or absent
//	CONFIG_X=n             the same as "is not set"
//	CONFIG_X=<other>       CONFIG_X must have exactly that value (strings
//	                       compare with their quotes, as written)
//
// The package uses only the standard library.
package kconfig

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Prefix starts the name of every option in a .config file.
const Prefix = "CONFIG_"

// Pos is where an option was set: a file and a 1-based line.
type Pos struct {
	File string
	Line int
}

// String returns "file:line", or "line N" when the file has no name.
func (p Pos) String() string {
	if p.File == "" {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Option is the value an option has in one configuration and where it was
// set.
type Option struct {
	// Value is "y", "m" or "n" for bool and tristate options ("n" also for
	// "# CONFIG_X is not set"), and otherwise the text after '=' as written:
	// a string keeps its double quotes and escapes, a number or hex value is
	// as in the file.
	Value string
	Pos   Pos
}

// Config maps option names, with the CONFIG_ prefix, to their values. An
// option that is absent is unset, the same as "n".
type Config map[string]Option

// Value returns the value of the option name ("CONFIG_X"), or "" when the
// configuration does not have it.
func (c Config) Value(name string) string {
	return c[name].Value
}

// Set reports whether the option name is y or m.
func (c Config) Set(name string) bool {
	v := c.Value(name)
	return v == "y" || v == "m"
}

// Names returns the option names in the order of their positions (file,
// then line), then by name.
func (c Config) Names() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return lessPos(c[names[i]].Pos, names[i], c[names[j]].Pos, names[j])
	})
	return names
}

func lessPos(a Pos, an string, b Pos, bn string) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return an < bn
}

// Parse reads a .config file or a config fragment. Blank lines and comments
// are skipped, except "# CONFIG_X is not set" (written exactly so, as the
// kernel reads it), which sets CONFIG_X to "n".
// When an option appears twice the later line wins, as in the kernel's
// own reader. Any other line is an error naming its line number.
func Parse(r io.Reader) (Config, error) {
	return ParseNamed(r, "")
}

// ParseNamed is Parse with a file name for the positions of the options and
// for error messages.
func ParseNamed(r io.Reader, name string) (Config, error) {
	c := Config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		pos := Pos{File: name, Line: line}
		n, v, ok, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pos, err)
		}
		if ok {
			c[n] = Option{Value: v, Pos: pos}
		}
	}
	if err := sc.Err(); err != nil {
		if name == "" {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// ParseFile reads the .config or fragment at path; positions name path as
// given.
func ParseFile(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseNamed(f, path)
}

// parseLine returns the option a line sets, ok=false for blank lines and
// comments, or an error for anything else.
func parseLine(s string) (name, value string, ok bool, err error) {
	s = strings.TrimRight(s, " \t\r")
	if s == "" {
		return "", "", false, nil
	}
	if strings.HasPrefix(s, "#") {
		// Exactly the kernel's form: other comments are only comments.
		n, found := strings.CutSuffix(strings.TrimPrefix(s, "# "), " is not set")
		if found && validName(n) {
			return n, "n", true, nil
		}
		return "", "", false, nil
	}
	if s[0] == ' ' || s[0] == '\t' {
		return "", "", false, fmt.Errorf("line starts with white space, which the kernel's reader ignores: %q", s)
	}
	n, v, found := strings.Cut(s, "=")
	if !found {
		return "", "", false, fmt.Errorf("want CONFIG_NAME=value or a # comment, got %q", s)
	}
	if !validName(n) {
		return "", "", false, fmt.Errorf("bad option name %q: want CONFIG_ followed by letters, digits and _", n)
	}
	if v == "" {
		return "", "", false, fmt.Errorf("%s has no value (an empty string is written %s=\"\")", n, n)
	}
	if strings.HasPrefix(v, `"`) {
		if err := checkQuoted(v); err != nil {
			return "", "", false, fmt.Errorf("%s: %w", n, err)
		}
		return n, v, true, nil
	}
	if i := strings.IndexAny(v, " \t#\""); i >= 0 {
		return "", "", false, fmt.Errorf("%s: unexpected %q in value %q (comments go on their own line)", n, v[i], v)
	}
	return n, v, true, nil
}

func validName(n string) bool {
	rest, ok := strings.CutPrefix(n, Prefix)
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return false
		}
	}
	return true
}

// checkQuoted accepts a double-quoted string with backslash escapes and
// nothing after the closing quote.
func checkQuoted(v string) error {
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			if i != len(v)-1 {
				return fmt.Errorf("text after the closing quote in %s", v)
			}
			return nil
		}
	}
	return fmt.Errorf("unterminated string %s", v)
}

// Required merges fragments into one set of requirements. An option that
// several fragments set keeps the strictest request (y over m) and the
// position of the first fragment that made it. Fragments that contradict
// each other (y or m against "not set", or two different values) are
// reported in the error, one line per option; the returned Config then
// holds the first fragment's request for those options.
func Required(fragments ...Config) (Config, error) {
	req := Config{}
	var errs []error
	for _, frag := range fragments {
		for _, name := range frag.Names() {
			o := frag[name]
			prev, seen := req[name]
			if !seen {
				req[name] = o
				continue
			}
			switch {
			case prev.Value == o.Value:
			case prev.Value == "m" && o.Value == "y":
				req[name] = o
			case prev.Value == "y" && o.Value == "m":
			default:
				errs = append(errs, fmt.Errorf("%s: %s asks for %s but %s asks for %s",
					name, prev.Pos, describe(prev.Value), o.Pos, describe(o.Value)))
			}
		}
	}
	return req, errors.Join(errs...)
}

// Problem is a required option that the final configuration does not
// satisfy.
type Problem struct {
	Name string // the option, e.g. "CONFIG_MEMCG"
	Want string // the fragment's value: "y", "m" (y or m will do), "n" or another value
	Got  string // the final value; "" when the final configuration lacks the option
	Pos  Pos    // the fragment line that asked for it
}

// String says which option, what was asked for and where, and what the
// final .config has, e.g.
// "CONFIG_MEMCG: required y (kernel/config/k3s.config:38), final .config has it unset".
func (p Problem) String() string {
	return fmt.Sprintf("%s: required %s (%s), final .config has %s",
		p.Name, describe(p.Want), p.Pos, describeGot(p.Got))
}

// Error makes a Problem usable as an error.
func (p Problem) Error() string { return p.String() }

func describe(want string) string {
	switch want {
	case "y":
		return "y"
	case "m":
		return "y or m"
	case "n":
		return "unset"
	}
	return want
}

func describeGot(got string) string {
	if got == "" || got == "n" {
		return "it unset"
	}
	return got
}

// Satisfies reports whether the value got, from a final configuration ("" if
// absent), meets the request want from a fragment.
func Satisfies(got, want string) bool {
	switch want {
	case "y":
		return got == "y"
	case "m":
		return got == "y" || got == "m"
	case "n":
		return got == "" || got == "n"
	}
	return got == want
}

// Check returns a Problem for every option in required that final does not
// satisfy, ordered by the fragment file and line that asked for it. An
// empty result means the final configuration has everything.
func Check(final, required Config) []Problem {
	var probs []Problem
	for _, name := range required.Names() {
		want := required[name]
		got := final.Value(name)
		if !Satisfies(got, want.Value) {
			probs = append(probs, Problem{Name: name, Want: want.Value, Got: got, Pos: want.Pos})
		}
	}
	return probs
}

// CheckFiles parses the final .config at finalPath and the fragments at
// fragmentPaths, and checks the one against the others. The error is for
// files that cannot be read or parsed and for fragments that contradict
// each other; unmet requirements are the returned problems.
func CheckFiles(finalPath string, fragmentPaths ...string) ([]Problem, error) {
	final, err := ParseFile(finalPath)
	if err != nil {
		return nil, err
	}
	frags := make([]Config, 0, len(fragmentPaths))
	for _, p := range fragmentPaths {
		f, err := ParseFile(p)
		if err != nil {
			return nil, err
		}
		frags = append(frags, f)
	}
	req, err := Required(frags...)
	if err != nil {
		return nil, err
	}
	return Check(final, req), nil
}
