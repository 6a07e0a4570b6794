package diskimage

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRelease(t *testing.T) {
	got := ParseRelease([]byte("NAME=\"k3OS for Raspberry Pi 4\"\nVERSION=0.1.0\nK3S=\"release v1.36.4+k3s1\"\n\nnot a pair\n"))
	want := map[string]string{"NAME": "k3OS for Raspberry Pi 4", "VERSION": "0.1.0", "K3S": "release v1.36.4+k3s1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseRelease (-want +got):\n%s", diff)
	}
}
