package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key pair from keygen signs and is trusted; keygen never overwrites,
// an encrypted key wants its password.
func TestKeygen(t *testing.T) {
	for _, password := range []string{"", "correct horse"} {
		path := filepath.Join(t.TempDir(), "keys", "upgrade.key")
		pub, err := Keygen(path, password)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("secret key mode %v, %v", fi.Mode(), err)
		}
		if _, err := Keygen(path, password); err == nil || !strings.Contains(err.Error(), "does not overwrite") {
			t.Errorf("a second keygen: %v", err)
		}
		key, err := LoadKey(path, password)
		if err != nil {
			t.Fatal(err)
		}
		if key.ID() != pub.ID() {
			t.Errorf("key %X, public %X", key.ID(), pub.ID())
		}
		if password != "" {
			if _, err := LoadKey(path, ""); err == nil || !strings.Contains(err.Error(), "UPGRADE_KEY_PASSWORD") {
				t.Errorf("an encrypted key without password: %v", err)
			}
			if _, err := LoadKey(path, "wrong"); err == nil {
				t.Error("an encrypted key opened with the wrong password")
			}
		}
		trust, err := TrustKeys(path, nil)
		if err != nil || len(trust) != 1 || !strings.Contains(trust[0], pub.String()) {
			t.Errorf("trust %q, %v; want %s", trust, err, pub)
		}
	}
	if _, err := LoadKey("", ""); err == nil || !strings.Contains(err.Error(), "keygen") {
		t.Errorf("no key: %v", err)
	}
	if _, err := TrustKeys("", []string{"/nonexistent.pub"}); err == nil || !strings.Contains(err.Error(), "/nonexistent.pub") {
		t.Errorf("a missing public key: %v", err)
	}
}

func TestBundleName(t *testing.T) {
	if got := BundleName("1.2.0", ""); got != "k3os-rpi4-arm64-1.2.0.upgrade" {
		t.Error(got)
	}
	if got := BundleName("1.2.0", "dc:a6:32:00:00:01"); got != "k3os-rpi4-arm64-1.2.0-dc-a6-32-00-00-01.upgrade" {
		t.Error(got)
	}
}
