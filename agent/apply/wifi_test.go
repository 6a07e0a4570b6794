package apply

import (
	"io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

func TestWifi(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{K3OS: nodeconfig.K3OS{Wifi: []nodeconfig.Wifi{
		{Name: "home", Passphrase: `pass "word" 1`},
		{Name: "café"},
		{Name: "short", Passphrase: "1234"},
	}}})
	err := wifiStep(t.Context(), n.Context)
	if err == nil {
		t.Error("wifiStep = nil error, want one for the short passphrase")
	}
	want := header + "ctrl_interface=/run/wpa_supplicant\nupdate_config=0\n" +
		"\nnetwork={\n\tssid=\"home\"\n\tpsk=\"pass \"word\" 1\"\n}\n" +
		"\nnetwork={\n\tssid=636166c3a9\n\tkey_mgmt=NONE\n}\n"
	if got := n.read(t, wifiFile); got != want {
		t.Errorf("%s = %q, want %q", wifiFile, got, want)
	}
	if got, want := n.mode(t, wifiFile), fs.FileMode(0o600); got != want {
		t.Errorf("%s mode = %v, want %v", wifiFile, got, want)
	}
	if diff := cmp.Diff([]string{"systemctl enable --now --no-block wpa_supplicant@wlan0.service"}, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

func TestWifiRemoved(t *testing.T) {
	n := newNode(t, &nodeconfig.Config{})
	writeTestFile(t, n.Root, wifiFile, "old")
	writeTestFile(t, n.Root, wifiWants, "")
	n.step(t, wifiStep)
	if n.exists(wifiFile) {
		t.Errorf("%s remains after the config dropped wifi", wifiFile)
	}
	if diff := cmp.Diff([]string{"systemctl disable wpa_supplicant@wlan0.service"}, n.run.lines(n.Root)); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}
