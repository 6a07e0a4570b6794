package nodeconfig

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// File names in a cluster directory besides <MAC>.yaml.
const (
	// DefaultName is the config of nodes whose MAC has no file.
	DefaultName = "default"
	// SharedName is merged under every node's file (token, keys...).
	SharedName = "cluster"
)

// Node is one config of a cluster: a MAC's, or the default one.
type Node struct {
	// MAC in canonical form (lowercase, colon-separated); "" for default.
	MAC string
	Doc *Doc
}

// Name is the node's file name in canonical form, without extension.
func (n *Node) Name() string {
	if n.MAC == "" {
		return DefaultName
	}
	return n.MAC
}

// Cluster is a validated config directory.
type Cluster struct {
	Dir   string
	Nodes []*Node // sorted by MAC, default last
}

// NormalizeMAC returns a MAC address in canonical form: lowercase hex,
// colon-separated. It accepts ':' or '-' separators in any letter case.
func NormalizeMAC(s string) (string, bool) {
	if len(s) != 17 {
		return "", false
	}
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

func isYAML(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// LoadCluster reads, merges and validates every config of a directory.
// The report holds every problem; the cluster is usable only when the
// report has no errors.
func LoadCluster(dir string) (*Cluster, Report) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, Report{{File: dir, Severity: Error, Msg: err.Error(), Hint: "set CONFIG_DIR to your cluster's config directory"}}
	}
	var r Report
	var shared *Doc
	byMAC := map[string]string{} // canonical MAC -> file that claimed it
	var nodes []*Node
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if e.IsDir() || !isYAML(name) {
			continue
		}
		base := strings.TrimSuffix(name, filepath.Ext(name))
		mac, ok := NormalizeMAC(base)
		switch {
		case base == DefaultName || base == SharedName:
		case !ok:
			r = append(r, Issue{File: path, Line: 1, Col: 1, Severity: Error,
				Msg:  fmt.Sprintf("file name %q is not a MAC address", name),
				Hint: "name node files after the MAC of their ethernet port, e.g. dc:a6:32:01:02:03.yaml, or default.yaml / cluster.yaml"})
			continue
		case byMAC[mac] != "":
			r = append(r, Issue{File: path, Line: 1, Col: 1, Severity: Error,
				Msg:  fmt.Sprintf("MAC %s has two files: %s and %s", mac, filepath.Base(byMAC[mac]), name),
				Hint: "keep one file per node"})
			continue
		default:
			byMAC[mac] = path
		}
		data, err := os.ReadFile(path)
		if err != nil {
			r = append(r, Issue{File: path, Severity: Error, Msg: err.Error()})
			continue
		}
		doc, pr := Parse(path, data)
		r = append(r, pr...)
		if doc == nil || pr.HasErrors() {
			continue
		}
		switch base {
		case SharedName:
			shared = doc
		case DefaultName:
			nodes = append(nodes, &Node{Doc: doc})
		default:
			nodes = append(nodes, &Node{MAC: mac, Doc: doc})
		}
	}
	c := &Cluster{Dir: dir}
	hostnames := map[string]string{}
	for _, n := range nodes {
		if shared != nil {
			merged, err := Merge(shared, n.Doc)
			if err != nil {
				r = append(r, decodeIssues(n.Doc.File, err)...)
				continue
			}
			n.Doc = merged
		}
		r = append(r, n.Doc.Validate()...)
		if h := n.Doc.Config.Hostname; h != "" && n.MAC != "" {
			if other, dup := hostnames[h]; dup {
				file, line, col := n.Doc.at("hostname")
				r = append(r, Issue{File: file, Line: line, Col: col, Severity: Error, Path: "hostname",
					Msg: fmt.Sprintf("hostname %q is also used by %s", h, filepath.Base(other)), Hint: "give every node its own hostname"})
			}
			hostnames[h] = n.Doc.File
		}
		c.Nodes = append(c.Nodes, n)
	}
	if len(nodes) == 0 && !r.HasErrors() {
		r = append(r, Issue{File: dir, Severity: Error, Msg: "no node configs",
			Hint: "add config/<MAC>.yaml for each node, or config/default.yaml"})
	}
	sort.Slice(c.Nodes, func(i, j int) bool {
		a, b := c.Nodes[i].MAC, c.Nodes[j].MAC
		if a == "" || b == "" {
			return b == ""
		}
		return a < b
	})
	return c, r.Sorted()
}

// Merge returns node's config laid over base's (cluster.yaml): keys of the
// node file win; the k3os: mapping is merged key by key; lists and other
// maps are replaced whole, as k3OS did.
func Merge(base, node *Doc) (*Doc, error) {
	root := mergeMaps(base.root, node.root, 2)
	d := &Doc{File: node.File, root: root, pos: map[string]loc{}}
	for p, l := range base.pos {
		d.pos[p] = l
	}
	for p, l := range node.pos {
		d.pos[p] = l
	}
	if err := root.Decode(&d.Config); err != nil {
		return nil, err
	}
	return d, nil
}

func mergeMaps(base, over *yaml.Node, depth int) *yaml.Node {
	if base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode || depth == 0 {
		return over
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: over.Line, Column: over.Column}
	idx := map[string]int{}
	for i := 0; i+1 < len(base.Content); i += 2 {
		idx[base.Content[i].Value] = len(out.Content)
		out.Content = append(out.Content, base.Content[i], base.Content[i+1])
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		if j, ok := idx[k.Value]; ok {
			out.Content[j+1] = mergeMaps(out.Content[j+1], v, depth-1)
			continue
		}
		out.Content = append(out.Content, k, v)
	}
	return out
}

// Marshal renders a config as canonical YAML, as written into the image.
func Marshal(c *Config) ([]byte, error) {
	return yaml.Marshal(c)
}

// FileFor returns the config file of the node with the given MAC in a
// directory written by the image build (canonical names), falling back to
// default.yaml. It returns "" when there is neither.
func FileFor(dir, mac string) string {
	if m, ok := NormalizeMAC(mac); ok {
		for _, ext := range []string{".yaml", ".yml"} {
			if p := filepath.Join(dir, m+ext); exists(p) {
				return p
			}
		}
		// Files copied by hand may use another spelling of the MAC.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			base := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
			if n, ok := NormalizeMAC(base); ok && n == m && isYAML(e.Name()) {
				return filepath.Join(dir, e.Name())
			}
		}
	}
	for _, ext := range []string{".yaml", ".yml"} {
		if p := filepath.Join(dir, DefaultName+ext); exists(p) {
			return p
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
