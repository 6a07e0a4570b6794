//go:build mage

// Targets of the k3OS Raspberry Pi 4 image build. Each is a few lines over
// the ci and nodeconfig packages; run `go tool mage -l` to list them.
package main

import (
	"os"
	"path/filepath"

	"github.com/magefile/mage/sh"

	"github.com/k3os-rpi/k3os-rpi4/ci"
	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func configDir() string {
	if d := os.Getenv("CONFIG_DIR"); d != "" {
		return d
	}
	return "config"
}

// Validate checks config/ (or $CONFIG_DIR) and prints each problem as file:line:col.
func Validate() error {
	_, err := ci.ValidateConfig(configDir(), os.Stdout)
	return err
}

// Schema writes the node config JSON Schema to dist/k3os-config.schema.json.
func Schema() error {
	b, err := nodeconfig.JSONSchema()
	if err != nil {
		return err
	}
	return ci.WriteFileAtomic(filepath.Join("dist", "k3os-config.schema.json"), b, 0o644)
}

// Test is the whole proof CI runs: vet, unit tests, a bounded fuzz run and config validation.
func Test() error {
	for _, args := range [][]string{
		{"vet", "./..."},
		{"test", "-count=1", "./..."},
		{"test", "-run=^$", "-fuzz=FuzzParse", "-fuzztime=20s", "./nodeconfig"},
	} {
		if err := sh.RunV("go", args...); err != nil {
			return err
		}
	}
	return Validate()
}
