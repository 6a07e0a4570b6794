#!/bin/sh
# Builds the kernel outputs, inside the image toolchain:
#   build.sh debian   Debian's prebuilt arm64 kernel (KERNEL=debian), from
#                     the locked linux-image deb in /in/debs
# Outputs in /out: Image, config, System.map, kernel.release, dtbs/ (the
# Pi 4 boards) and modroot/lib/modules/<release>/ (modules, depmod'ed).
set -eu

dtbs() { # dtbs DIR: the Pi 4 family's device trees
	mkdir -p /out/dtbs
	for b in bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4-io; do
		cp "$1/$b.dtb" /out/dtbs/
	done
}

debian() {
	dpkg-deb -x /in/debs/linux-image-*.deb /work/k
	rel=$(ls /work/k/usr/lib/modules)
	cp /work/k/boot/vmlinuz-$rel /out/Image
	cp /work/k/boot/config-$rel /out/config
	cp /work/k/boot/System.map-$rel /out/System.map
	echo "$rel" > /out/kernel.release
	echo debian > /out/flavour
	dtbs /work/k/usr/lib/linux-image-$rel/broadcom
	mkdir -p /out/modroot/lib/modules
	cp -a /work/k/usr/lib/modules/$rel /out/modroot/lib/modules/
	depmod -b /out/modroot "$rel"
	echo "kernel $rel (Debian): $(du -k /out/Image | cut -f1) KiB"
}

case "${1:-}" in
debian) debian ;;
*) echo "usage: $0 debian" >&2; exit 2 ;;
esac
