package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// The engines depend on the step model and nothing else of the project:
// no image, kernel config or node config code comes with them.
func TestEnginesImportOnlyTheStepModel(t *testing.T) {
	for _, pkg := range []string{"./host", "./dagger"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			own, ok := strings.CutPrefix(dep, "github.com/k3os-rpi/k3os-rpi4/")
			if ok && own != "pipeline/step" && own != "pipeline/atomicfile" && !strings.HasPrefix(own, "pipeline/engine/") {
				t.Errorf("%s imports %s", pkg, own)
			}
			if strings.Contains(dep, "go-diskfs") {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}
