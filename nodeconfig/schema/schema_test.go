package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The committed schema is what the types and their comments give now,
// and it describes every property.
func TestJSONSchema(t *testing.T) {
	b, err := Generate("..")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, JSON()) {
		t.Fatal("k3os-config.schema.json is stale: run go tool mage generate")
	}
	var schema any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	props := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if p, ok := m["properties"].(map[string]any); ok {
			for name, prop := range p {
				props++
				if d, _ := prop.(map[string]any)["description"].(string); len(d) < 10 {
					t.Errorf("property %s%s has no description (a doc comment on its Go field)", path, name)
				}
				walk(path+name+".", prop)
			}
		}
		for _, k := range []string{"items", "additionalProperties"} {
			walk(path, m[k])
		}
	}
	walk("", schema)
	if props < 30 {
		t.Errorf("the schema describes %d properties", props)
	}
	if !strings.Contains(string(b), `"additionalProperties": false`) {
		t.Error("the schema allows unknown keys")
	}
}

// docs/config.md's key reference is what the types give now.
func TestReference(t *testing.T) {
	want, err := Reference("..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- keys: go tool mage generate -->\n")
	got, _, ok2 := strings.Cut(rest, "<!-- /keys -->")
	if !ok || !ok2 || got != want {
		t.Errorf("docs/config.md's key reference is stale: run go tool mage generate")
	}
	for _, key := range []string{"`hostname`", "`write_files[].encoding`", "`k3os.wifi[].passphrase`", "`k3os.network.NAME.address`", "`k3os.datastore_endpoint`"} {
		if !strings.Contains(want, key) {
			t.Errorf("the reference lacks %s", key)
		}
	}
}
