package nodeconfig

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// JSONSchema returns the JSON Schema of a node config file, generated from
// the Go types, for editor completion. It describes the canonical spelling
// of keys; the parser also accepts k3OS's other spellings.
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{FieldNameTag: "yaml", AllowAdditionalProperties: false, DoNotReference: true}
	s := r.Reflect(&Config{})
	s.ID = "https://github.com/k3os-rpi/k3os-rpi4/k3os-config.schema.json"
	s.Title = "k3OS node config (Raspberry Pi 4)"
	return json.MarshalIndent(s, "", "  ")
}
