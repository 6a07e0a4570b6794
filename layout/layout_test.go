package layout

import "testing"

func TestAutoboot(t *testing.T) {
	for _, c := range []struct {
		text      string
		boot, try int
	}{
		{Autoboot(BootA, BootB), 2, 3},
		{Autoboot(BootB, BootA), 3, 2},
		{"[all]\nboot_partition=2\n", 2, 2},
		{"boot_partition=3\n[none]\nboot_partition=9\n", 3, 3},
		{"# a comment\n[all]\n tryboot_a_b=1\nboot_partition=2\r\n[tryboot]\nboot_partition=3\n", 2, 3},
	} {
		if b, tr := ParseAutoboot(c.text); b != c.boot || tr != c.try {
			t.Errorf("ParseAutoboot(%q) = %d, %d; want %d, %d", c.text, b, tr, c.boot, c.try)
		}
	}
	if OtherSlot(BootA) != BootB || OtherSlot(BootB) != BootA {
		t.Error("OtherSlot")
	}
	if len(Autoboot(BootA, BootB)) > 512 {
		t.Error("autoboot.txt must fit 512 bytes")
	}
}
