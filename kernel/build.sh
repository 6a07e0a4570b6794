#!/bin/sh
# Builds the kernel outputs:
#   build.sh debian          Debian's prebuilt arm64 kernel (KERNEL=debian),
#                            from the locked linux-image deb in /in/debs
#   build.sh config FLAVOUR  the .config of linux-source (pi, full or
#                            reduced): base + fragments, merged -> /out/config
#   build.sh build           the kernel of /in/config/config
# Outputs in /out: Image, config, System.map, kernel.release, dtbs/ (the
# Pi 4 boards), modroot/lib/modules/<release>/ (modules, depmod'ed) and,
# for kernels built here, objects (how many objects the config compiles).
# $LOCALVERSION, when set, is appended to the kernel release.
set -eu

export ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
# The kernel's own stamps, fixed: the same inputs give the same Image.
export KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH")" KBUILD_BUILD_USER=k3os KBUILD_BUILD_HOST=k3os-rpi4
F=/in/kernel/config
src=/work/linux
# The Pi 4 family: 4B, 400, CM4 on its IO board.
PI_BOARDS="bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4-io"

unpack() {
	dpkg-deb --fsys-tarfile /in/source/linux-source-*.deb | tar -x -C /work --wildcards './usr/src/linux-source-*.tar.xz'
	mkdir -p $src
	tar -xJf /work/usr/src/linux-source-*.tar.xz -C $src --strip-components=1
	rm -rf /work/usr
	# Our patches (kernel/patches), in name order; each says why.
	for p in /in/kernel/patches/*.patch; do
		patch -s -p1 -d $src < "$p"
	done
}

config() {
	unpack
	cd $src
	mkdir -p /work/o
	case "$1" in
	pi)
		# k3s's needs and the cluster add-ons built in, though a module
		# would do: nothing waits for a module at boot or at k3s's start,
		# and the build links a handful of modules, not a hundred. The Pi's
		# own modules (rpi4.config) stay modules.
		for f in k3s cluster; do sed 's/=m$/=y/' $F/$f.config > /work/$f-builtin.config; done
		scripts/kconfig/merge_config.sh -n -O /work/o $F/systemd.config $F/modules.config /work/k3s-builtin.config \
			/work/cluster-builtin.config $F/rpi4.config $F/qemu-virt.config >/work/merge.log ;;
	full)
		dpkg-deb --fsys-tarfile /in/source/linux-config-*.deb | tar -x -C /work --wildcards '*config.arm64_none_arm64.xz'
		xz -dc /work/usr/src/linux-config-*/config.arm64_none_arm64.xz > /work/debian.config
		scripts/kconfig/merge_config.sh -O /work/o /work/debian.config $F/rpi4.config $F/k3s.config $F/cluster.config \
			$F/qemu-virt.config $F/nodebug.config >/work/merge.log ;;
	reduced)
		scripts/kconfig/merge_config.sh -n -O /work/o $F/systemd.config $F/nomodules.config $F/k3s.config $F/qemu-virt.config >/work/merge.log ;;
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
		# Only the Pi 4 family's device trees, not every arm64 board's.
		kmake Image modules $(for b in $PI_BOARDS; do echo broadcom/$b.dtb; done)
		kmake INSTALL_MOD_PATH=/out/modroot INSTALL_MOD_STRIP=1 modules_install
		dtbs /work/o/arch/arm64/boot/dts/broadcom
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
	# The objects this config compiles: a build-size figure no busy
	# machine changes (modules' .mod.o glue and the link's own left out).
	find /work/o -name '*.o' ! -name '*.mod.o' ! -name '.*' ! -name 'vmlinux.o' | wc -l > /out/objects
	echo "kernel $rel ($(cat /out/flavour)): $(du -k /out/Image | cut -f1) KiB, $(cat /out/objects) objects"
}

dtbs() { # dtbs DIR: the Pi 4 family's device trees
	mkdir -p /out/dtbs
	for b in $PI_BOARDS; do
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
