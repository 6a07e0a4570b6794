#!/bin/sh
# Builds the kernel outputs:
#   build.sh debian          Debian's prebuilt arm64 kernel (KERNEL=debian),
#                            from the locked linux-image deb in /in/debs
#   build.sh config FLAVOUR  the .config of linux-source (source or reduced):
#                            base + fragments, merged -> /out/config
#   build.sh build           the kernel of /in/config/config
# Outputs in /out: Image, config, System.map, kernel.release, dtbs/ (the
# Pi 4 boards) and modroot/lib/modules/<release>/ (modules, depmod'ed).
set -eu

export ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
# The kernel's own stamps, fixed: the same inputs give the same Image.
export KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH")" KBUILD_BUILD_USER=k3os KBUILD_BUILD_HOST=k3os-rpi4
F=/in/kernel/config
src=/work/linux

unpack() {
	dpkg-deb --fsys-tarfile /in/source/linux-source-*.deb | tar -x -C /work --wildcards './usr/src/linux-source-*.tar.xz'
	mkdir -p $src
	tar -xJf /work/usr/src/linux-source-*.tar.xz -C $src --strip-components=1
	rm -rf /work/usr
}

config() {
	unpack
	cd $src
	mkdir -p /work/o
	case "$1" in
	full)
		dpkg-deb --fsys-tarfile /in/source/linux-config-*.deb | tar -x -C /work --wildcards '*config.arm64_none_arm64.xz'
		xz -dc /work/usr/src/linux-config-*/config.arm64_none_arm64.xz > /work/debian.config
		scripts/kconfig/merge_config.sh -O /work/o /work/debian.config $F/rpi4.config $F/k3s.config $F/qemu-virt.config $F/nodebug.config >/work/merge.log ;;
	reduced)
		scripts/kconfig/merge_config.sh -n -O /work/o $F/reduced.config $F/k3s.config $F/qemu-virt.config >/work/merge.log ;;
	*) echo "unknown flavour $1" >&2; exit 2 ;;
	esac
	cp /work/o/.config /out/config
	echo "$1" > /out/flavour
	echo "config: $(grep -c '=y' /out/config) options built in, $(grep -c '=m' /out/config) modules"
}

kmake() { make O=/work/o -j"$(nproc)" CC="ccache ${CROSS_COMPILE}gcc" "$@"; }

build() {
	unpack
	cd $src
	mkdir -p /work/o
	cp /in/config/config /work/o/.config
	export CCACHE_DIR=/cache/ccache CCACHE_BASEDIR=/work CCACHE_MAXSIZE=5G
	kmake olddefconfig >/dev/null
	cmp -s /in/config/config /work/o/.config || { echo "olddefconfig changed the checked .config" >&2; diff /in/config/config /work/o/.config | head >&2; exit 1; }
	if grep -q '^CONFIG_MODULES=y' /work/o/.config; then
		kmake Image modules dtbs
		kmake INSTALL_MOD_PATH=/out/modroot INSTALL_MOD_STRIP=1 modules_install
		mkdir -p /out/dtbs
		for b in bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4-io; do cp /work/o/arch/arm64/boot/dts/broadcom/$b.dtb /out/dtbs/; done
	else
		kmake Image
		# Without modules, modprobe still needs to know what is built in.
		rel=$(cat /work/o/include/config/kernel.release)
		mkdir -p /out/modroot/lib/modules/$rel
		tr '\0' '\n' < /work/o/modules.builtin.modinfo | sed -n 's/^[[:alnum:]:_]*\.file=//p' | tr ' ' '\n' | uniq |
			sed -e 's:^:kernel/:' -e 's/$/.ko/' > /out/modroot/lib/modules/$rel/modules.builtin
		# The Pi device trees of the same source release, from Debian's build.
		dpkg-deb -x /in/debs/linux-image-*.deb /work/k
		dtbs /work/k/usr/lib/linux-image-*/broadcom
	fi
	rel=$(cat /work/o/include/config/kernel.release)
	rm -f /out/modroot/lib/modules/$rel/build /out/modroot/lib/modules/$rel/source
	depmod -b /out/modroot "$rel"
	cp /work/o/arch/arm64/boot/Image /out/Image
	cp /work/o/.config /out/config
	cp /work/o/System.map /out/System.map
	echo "$rel" > /out/kernel.release
	cp /in/config/flavour /out/flavour
	echo "kernel $rel ($(cat /out/flavour)): $(du -k /out/Image | cut -f1) KiB"
}

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
config) config "$2" ;;
build) build ;;
*) echo "usage: $0 debian|config FLAVOUR|build" >&2; exit 2 ;;
esac
