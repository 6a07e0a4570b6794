// Command k3os-agent is the on-device agent of the image: the initramfs
// /init that finds the node's config by MAC and enters the read-only root,
// and the boot-time service that applies the config.
package main

import (
	"fmt"
	"os"
)

// version is set at build time (-X main.version=...).
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: k3os-agent version")
	os.Exit(2)
}
