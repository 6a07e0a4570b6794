package nodeconfig

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Doc is a parsed config file: the typed config and where each value stood.
type Doc struct {
	File   string
	Config Config
	// root is the (rewritten) document, used for merging and positions.
	root *yaml.Node
	pos  map[string]loc
}

// loc is where a value stood; after a merge it may be in another file.
type loc struct {
	file string
	n    *yaml.Node
}

// Parse reads one config file leniently, as k3OS did: key names in
// snake_case or camelCase, singular or plural, and a single value where a
// list is expected. Unlike k3OS it rejects unknown keys, with a hint. The
// report holds every problem found; the Doc is nil only when the YAML
// itself cannot be read.
func Parse(file string, data []byte) (*Doc, Report) {
	d := &Doc{File: file, pos: map[string]loc{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Report{syntaxIssue(file, err)}
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		d.root = root.Content[0]
	} else {
		// An empty file, or one holding only comments: an empty config.
		d.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	var r Report
	if d.root.Kind == yaml.ScalarNode && d.root.Tag == "!!null" {
		d.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	d.walk(d.root, reflect.TypeOf(Config{}), "", &r)
	if r.HasErrors() {
		return d, r
	}
	if err := d.root.Decode(&d.Config); err != nil {
		r = append(r, decodeIssues(file, err)...)
	}
	return d, r
}

var yamlLine = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: (.*)`)

func syntaxIssue(file string, err error) Issue {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	is := Issue{File: file, Line: 1, Col: 1, Severity: Error, Msg: "not valid YAML: " + msg,
		Hint: "check indentation (spaces, not tabs) and quote values that contain ': ' or start with '*', '&', '!', '%' or '@'"}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		is.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			is.Col, _ = strconv.Atoi(m[2])
		}
		is.Msg = "not valid YAML: " + m[3]
	}
	return is
}

func decodeIssues(file string, err error) Report {
	var r Report
	te, ok := err.(*yaml.TypeError)
	if !ok {
		return Report{{File: file, Line: 1, Col: 1, Severity: Error, Msg: err.Error()}}
	}
	for _, e := range te.Errors {
		is := Issue{File: file, Line: 1, Col: 1, Severity: Error, Msg: e}
		if m := yamlLine.FindStringSubmatch(e); m != nil {
			is.Line, _ = strconv.Atoi(m[1])
			is.Msg = m[3]
		}
		r = append(r, is)
	}
	return r
}

// norm folds the spellings k3OS accepted: case, '_' and '-', and a plural 's'.
func norm(key string) string {
	k := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(key))
	return strings.TrimSuffix(k, "s")
}

type field struct {
	name  string // canonical yaml name
	index int
}

// fields lists a struct type's yaml keys by their folded spelling.
func fields(t reflect.Type) map[string]field {
	m := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[norm(name)] = field{name, i}
		}
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// walk checks n against Go type t, rewrites key spellings to the canonical
// ones, wraps single values where lists are expected, and records positions.
func (d *Doc) walk(n *yaml.Node, t reflect.Type, path string, r *Report) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.pos[path] = loc{d.File, n}
	if isNull(n) {
		return
	}
	bad := func(want, hint string) {
		*r = append(*r, Issue{File: d.File, Line: n.Line, Col: n.Column, Severity: Error, Path: path,
			Msg: fmt.Sprintf("expected %s, got %s", want, kindName(n)), Hint: hint})
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("a mapping of keys", "write it as 'key: value' lines indented under "+lastKey(path))
			return
		}
		fs := fields(t)
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fs[norm(k.Value)]
			if !ok {
				*r = append(*r, d.unknownKey(k, path, fs))
				continue
			}
			if prev, dup := seen[f.name]; dup {
				*r = append(*r, Issue{File: d.File, Line: k.Line, Col: k.Column, Severity: Error, Path: join(path, f.name),
					Msg: fmt.Sprintf("given twice (also as %q at line %d)", prev.Value, prev.Line), Hint: "keep one of them"})
				continue
			}
			seen[f.name] = k
			k.Value = f.name
			d.walk(v, t.Field(f.index).Type, join(path, f.name), r)
		}
	case reflect.Slice:
		switch n.Kind {
		case yaml.MappingNode:
			bad("a list", "write each item on its own line starting with '- '")
			return
		case yaml.ScalarNode:
			// k3OS accepted a single value where a list was expected.
			item := *n
			*n = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column, Content: []*yaml.Node{&item}}
		}
		for i, c := range n.Content {
			d.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), r)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("a mapping", "write it as 'key: value' lines indented under "+lastKey(path))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), r)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("a single value", "quote it if it is meant as text")
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			*r = append(*r, Issue{File: d.File, Line: n.Line, Col: n.Column, Severity: Error, Path: path,
				Msg: fmt.Sprintf("expected true or false, got %q", n.Value), Hint: "write true or false"})
		}
	}
}

func lastKey(path string) string {
	if path == "" {
		return "the top level"
	}
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

// cloudInit names cloud-init keys that k3OS never read, with what to use.
var cloudInit = map[string]string{
	"users":            "this image has one user, rancher: use ssh_authorized_keys and k3os.password",
	"packages":         "the root is read-only: add files under overlay/ or packages to rootfs/packages.list",
	"sshpwauth":        "password login is enabled by setting k3os.password",
	"chpasswd":         "use k3os.password",
	"ntp":              "use k3os.ntp_servers",
	"timezone":         "write /etc/timezone with write_files",
	"manage_etc_hosts": "the hostname key sets /etc/hosts",
}

func cloudInitHint(folded string) string {
	for k, hint := range cloudInit {
		if norm(k) == folded {
			return hint
		}
	}
	return ""
}

// unknownKey explains a key that is not in the schema at this level.
func (d *Doc) unknownKey(k *yaml.Node, path string, fs map[string]field) Issue {
	is := Issue{File: d.File, Line: k.Line, Col: k.Column, Severity: Error, Path: join(path, k.Value),
		Msg: "unknown key " + strconv.Quote(k.Value)}
	nk := norm(k.Value)
	// The key belongs at the other level.
	top, k3os := fields(reflect.TypeOf(Config{})), fields(reflect.TypeOf(K3OS{}))
	switch {
	case path == "" && k3os[nk].name != "":
		is.Hint = "it belongs under k3os: as k3os." + k3os[nk].name
		return is
	case path == "k3os" && top[nk].name != "":
		is.Hint = "it belongs at the top level, not under k3os:"
		return is
	case path == "" && cloudInitHint(nk) != "":
		is.Msg += " (a cloud-init key that k3OS never read)"
		is.Hint = cloudInitHint(nk)
		return is
	}
	best, bestD := "", 1<<30
	for n, f := range fs {
		if dist := levenshtein(nk, n); dist < bestD {
			best, bestD = f.name, dist
		}
	}
	if best != "" && bestD <= max(2, len(nk)/3) {
		is.Hint = "did you mean " + strconv.Quote(best) + "?"
	} else {
		names := make([]string, 0, len(fs))
		for _, f := range fs {
			names = append(names, f.name)
		}
		slices.Sort(names)
		is.Hint = "known keys here: " + strings.Join(names, ", ")
	}
	return is
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// at returns the position of a logical path, or of its nearest ancestor.
func (d *Doc) at(path string) (file string, line, col int) {
	for p := path; ; {
		if l, ok := d.pos[p]; ok && l.n.Line > 0 {
			return l.file, l.n.Line, l.n.Column
		}
		if p == "" {
			return d.File, 1, 1
		}
		i := max(strings.LastIndex(p, "."), strings.LastIndex(p, "["))
		if i < 0 {
			p = ""
		} else {
			p = p[:i]
		}
	}
}
