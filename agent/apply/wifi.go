package apply

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/k3os-rpi/k3os-rpi4/nodeconfig"
)

const (
	wifiUnit = "wpa_supplicant@wlan0.service"
	wifiFile = "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
	// wifiWants is the link "systemctl enable" makes for wifiUnit.
	wifiWants = "/etc/systemd/system/multi-user.target.wants/" + wifiUnit
)

// wifiStep writes wpa_supplicant's config for wlan0 with the config's
// networks and enables it; without networks it removes both.
func wifiStep(ctx context.Context, c *Context) error {
	nets := c.cfg().K3OS.Wifi
	if len(nets) == 0 {
		err := c.removeFile(wifiFile)
		if c.exists(wifiWants) {
			err = errors.Join(err, c.run(ctx, "systemctl", "disable", wifiUnit))
		}
		return err
	}
	var errs []error
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("ctrl_interface=/run/wpa_supplicant\nupdate_config=0\n")
	for i, w := range nets {
		block, err := wifiNetwork(w)
		if err != nil {
			errs = append(errs, fmt.Errorf("wifi[%d] %q: %w", i, w.Name, err))
			continue
		}
		b.WriteString("\n" + block)
	}
	if err := c.writeFile(wifiFile, []byte(b.String()), 0o600, nil); err != nil {
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, enableNow(ctx, c, wifiUnit))
	return errors.Join(errs...)
}

// enableNow enables a unit and starts it without waiting: enabling alone
// comes too late for the boot under way, whose jobs are already queued,
// and waiting could deadlock on a unit ordered after the apply.
func enableNow(ctx context.Context, c *Context, unit string) error {
	return c.run(ctx, "systemctl", "enable", "--now", "--no-block", unit)
}

func wifiNetwork(w nodeconfig.Wifi) (string, error) {
	if w.Name == "" {
		return "", errors.New("no name")
	}
	var b strings.Builder
	b.WriteString("network={\n")
	// A quoted SSID cannot hold a quote or a line break; hex can hold anything.
	if printable(w.Name) && !strings.Contains(w.Name, `"`) {
		b.WriteString("\tssid=\"" + w.Name + "\"\n")
	} else {
		b.WriteString("\tssid=" + hex.EncodeToString([]byte(w.Name)) + "\n")
	}
	if w.Passphrase == "" {
		b.WriteString("\tkey_mgmt=NONE\n")
	} else {
		if n := len(w.Passphrase); n < 8 || n > 63 || !printable(w.Passphrase) {
			return "", errors.New("a WPA passphrase has 8 to 63 printable ASCII characters")
		}
		// wpa_supplicant reads up to the last quote, so quotes inside are fine.
		b.WriteString("\tpsk=\"" + w.Passphrase + "\"\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// printable tells whether s is printable ASCII.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
