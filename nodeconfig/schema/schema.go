// Package schema is the node config's JSON Schema and key reference,
// generated from the nodeconfig types and their doc comments; the agent on
// the node does not carry it.
package schema

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

// pkgPath is the nodeconfig package's import path, under which the schema
// generator files the doc comments it reads.
const pkgPath = "github.com/k3os-rpi/k3os-rpi4/nodeconfig"

//go:embed k3os-config.schema.json
var schemaJSON []byte

// JSON is the JSON Schema of a node config file, for editor completion:
// the committed k3os-config.schema.json, generated from the Go types and
// their doc comments. It describes the canonical spelling of keys; the
// parser also accepts k3OS's other spellings.
func JSON() []byte { return schemaJSON }

// comments reads the doc comment of every type and field of package
// nodeconfig, whose source is in dir, into a reflector. By hand, not with
// the reflector's AddGoComments: that one names packages after the path it
// is given relative to the working directory, and this runs from the
// project (mage generate) and from this package's tests.
func comments(dir string) (*jsonschema.Reflector, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	r := &jsonschema.Reflector{FieldNameTag: "yaml", AllowAdditionalProperties: false, DoNotReference: true, CommentMap: map[string]string{}}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fld := range st.Fields.List {
				for _, name := range fld.Names {
					r.CommentMap[pkgPath+"."+ts.Name.Name+"."+name.Name] = strings.TrimSpace(fld.Doc.Text())
				}
			}
			return true
		})
	}
	if r.CommentMap[pkgPath+".Config.Hostname"] == "" {
		return nil, fmt.Errorf("%s: no doc comments of package nodeconfig found there", dir)
	}
	return r, nil
}

// Generate makes the JSON Schema from the types and the comments in dir,
// nodeconfig's source (go tool mage generate writes it).
func Generate(dir string) ([]byte, error) {
	r, err := comments(dir)
	if err != nil {
		return nil, err
	}
	s := r.Reflect(&nodeconfig.Config{})
	s.ID = "https://github.com/k3os-rpi/k3os-rpi4/k3os-config.schema.json"
	s.Title = "k3OS node config (Raspberry Pi 4)"
	b, err := json.MarshalIndent(s, "", "  ")
	return append(b, '\n'), err
}

// Reference renders every key as a Markdown table (key, type, meaning)
// from the types and the comments in dir: the key reference of
// docs/config.md.
func Reference(dir string) (string, error) {
	r, err := comments(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| key | type | meaning |\n|---|---|---|\n")
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			doc := meaning(f.Name, r.CommentMap[pkgPath+"."+t.Name()+"."+f.Name])
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".")
				continue
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				fmt.Fprintf(&b, "| `%s` | list | %s |\n", key, doc)
				walk(ft.Elem(), key+"[].")
				continue
			case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
				fmt.Fprintf(&b, "| `%s` | map | %s |\n", key, doc)
				walk(ft.Elem(), key+".NAME.")
				continue
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", key, kind(ft), doc)
		}
	}
	walk(reflect.TypeOf(nodeconfig.Config{}), "")
	return b.String(), nil
}

// meaning turns a Go doc comment ("Token is the cluster's secret") into a
// table cell ("The cluster's secret").
func meaning(field, comment string) string {
	s := strings.Join(strings.Fields(comment), " ")
	rest, ok := strings.CutPrefix(s, field+" ")
	if !ok {
		return s
	}
	ext, rest := "", strings.TrimPrefix(rest, "(extension) ")
	if len(rest) < len(s)-len(field)-1 {
		ext = "(extension) "
	}
	for _, verb := range []string{"is ", "are "} {
		rest = strings.TrimPrefix(rest, verb)
	}
	if rest == "" {
		return s
	}
	return ext + strings.ToUpper(rest[:1]) + rest[1:]
}

func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + kind(t.Elem()) + "s"
	case reflect.Map:
		return "map"
	case reflect.Interface:
		return "any"
	}
	return t.Kind().String()
}
