#!/bin/sh
# Assembles the boot files and the SD-card image, inside the image
# toolchain, with Debian's tools (mkfs.vfat/mtools, mke2fs -d, sfdisk).
#
#   image.sh boot   /in/kernel, /in/agent, /in/firmware -> /out/boot.vfat
#                   (a boot slot of system version $VERSION),
#                   /out/modules.squashfs, /out/boot/ (the files, for the record)
#   image.sh disk   /in/boot, /in/rootfs, /in/config, /in/trust and, when
#                   there are any, /in/images (the version's images for
#                   k3s) and /in/cluster-images -> /out/$IMAGE
#
# The card's layout comes from the step's environment (package layout):
# the autoboot partition (AUTOBOOT_*), two boot slots (BOOT_*), the state
# partition (STATE_*), and the state's tree (SYSTEM_DIR, ...).
set -eu

# Modules the initramfs loads to reach the state partition and to read the
# MAC of the wired port, on a Pi 4 and on QEMU's virt machine (absent or
# built-in ones are skipped).
INITRD_MODULES="sdhci sdhci-pltfm sdhci-iproc mmc_block gpio-regulator reset-raspberrypi
pcie-brcmstb xhci-pci usb-storage uas
virtio_pci virtio_mmio virtio_blk virtio_net
genet broadcom mdio-bcm-unimac
crc32c_generic ext4 squashfs loop overlay"

stamp() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

initrd() {
	rel=$(cat /in/kernel/kernel.release)
	modroot=/in/kernel/modroot
	i=/work/initrd
	mkdir -p $i/lib/modules $i/dev $i/proc $i/sys $i/run
	install -m 0755 /in/agent/k3os-agent $i/init
	mknod -m 600 $i/dev/console c 5 1
	: > $i/lib/modules/load.list
	for m in $INITRD_MODULES; do
		modprobe -d $modroot -S "$rel" --show-depends "$m" 2>/dev/null || echo "# $m: not in this kernel" >&2
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
		name=$(basename "$ko"); name=${name%.xz}; name=${name%.zst}
		case "$ko" in
		*.xz) xz -dc "$ko" > $i/lib/modules/$name ;;
		*.zst) zstd -qdc "$ko" > $i/lib/modules/$name ;;
		*) cp "$ko" $i/lib/modules/$name ;;
		esac
		echo "/lib/modules/$name" >> $i/lib/modules/load.list
	done
	echo "initramfs: $(wc -l < $i/lib/modules/load.list) modules"
	stamp $i
	(cd $i && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) | zstd -q -19 -T0 > /work/boot/initrd.img
}

boot() {
	mkdir -p /work/boot /work/fw
	initrd
	cp /in/kernel/Image /work/boot/Image
	cp /in/kernel/dtbs/*.dtb /work/boot/
	dpkg-deb -x /in/firmware/raspi-firmware_*.deb /work/fw
	for f in start4.elf fixup4.dat start4cd.elf fixup4cd.dat start4x.elf fixup4x.dat start4db.elf fixup4db.dat; do
		cp /work/fw/usr/lib/raspi-firmware/$f /work/boot/
	done
	cat > /work/boot/config.txt <<-CONF
	# k3OS for Raspberry Pi 4 (generated; see docs/image.md)
	[pi4]
	arm_64bit=1
	kernel=Image
	initramfs initrd.img followkernel
	# A serial console on GPIO 14/15 (115200 8N1).
	enable_uart=1
	# The Pi firmware's own overlays and splash are not used.
	disable_overscan=1
	disable_splash=1
	[all]
	CONF
	# The root is found by label by the initramfs; cgroup memory is what
	# k3s will not start without; a panic reboots (a trial boot that panics
	# falls back to the committed slot); the slot names its system version
	# and the node's config (the card's own, kept at its first boot). The
	# kernel's interface names (eth0, wlan0), as k3OS had them: a config's
	# k3os.network.eth0 is the Pi's ethernet port.
	echo "root=LABEL=$STATE_LABEL rootwait console=ttyS1,115200 console=tty1 cgroup_memory=1 cgroup_enable=memory panic=10 net.ifnames=0 quiet $SYSTEM_PARAM=$VERSION $CONFIG_PARAM=$CARD_CONFIG" > /work/boot/cmdline.txt
	stamp /work/boot
	mkdir -p /out/boot
	cp -a /work/boot/. /out/boot/
	fat 32 "$BOOT_LABEL" /out/boot.vfat $BOOT_MIB
	(cd /work/boot && LC_ALL=C ls | while read -r f; do mcopy -m -i /out/boot.vfat "$f" ::/; done)
	rel=$(cat /in/kernel/kernel.release)
	# Owners and times fixed here: the kernel step's files may come through
	# an engine's export, which does not keep them.
	# (mksquashfs refuses SOURCE_DATE_EPOCH beside -all-time.)
	env -u SOURCE_DATE_EPOCH mksquashfs /in/kernel/modroot/lib/modules /out/modules.squashfs -comp zstd -noappend -no-progress -quiet \
		-all-root -all-time "$SOURCE_DATE_EPOCH" -mkfs-time "$SOURCE_DATE_EPOCH" -no-xattrs
	echo "boot: kernel $rel, $(du -k /out/modules.squashfs | cut -f1) KiB of modules"
}

# fat BITS LABEL FILE MIB: an empty FAT filesystem, the same bytes from the
# same arguments.
fat() {
	mkfs.vfat -C -F "$1" -n "$2" --invariant "$3" $(($4 * 1024)) >/dev/null
}

disk() {
	s=/work/state
	sys=$s/$SYSTEM_DIR/$VERSION
	mkdir -p "$sys" "$s/$DATA_DIR" "$s/$CONFIG_DIR" "$s/$TRUST_DIR"
	cp /in/rootfs/rootfs.squashfs /in/rootfs/k3os-release /in/boot/modules.squashfs "$sys/"
	# The version's boot slot, kept to write a slot again (a rollback, a
	# config-only upgrade); sparse, as the FAT is mostly empty.
	cp --sparse=always /in/boot/boot.vfat "$sys/$BOOT_IMAGE"
	# No configs at all (CONFIG_DIR=none): every node boots unconfigured.
	for f in /in/config/*.yaml; do [ -e "$f" ] && cp "$f" "$s/$CONFIG_DIR/"; done
	for f in /in/trust/*.pub; do [ -e "$f" ] && cp "$f" "$s/$TRUST_DIR/"; done
	# Images for k3s: the version's (K3S_IMAGES) beside its root, as they
	# change with it; the cluster's own (CONFIG_DIR/images) apart, kept
	# across upgrades.
	if [ -d /in/images/images ]; then
		mkdir -p "$sys/$VERSION_IMAGES"
		cp /in/images/images/* "$sys/$VERSION_IMAGES/"
	fi
	if [ -d /in/cluster-images ]; then
		mkdir -p "$s/$CLUSTER_IMAGES"
		cp /in/cluster-images/* "$s/$CLUSTER_IMAGES/"
	fi
	stamp $s
	used=$(du -sm $s | cut -f1)
	state_mib=$((used + used / 10 + STATE_SLACK_MIB))
	img=/out/$IMAGE
	ab=$ALIGN_MIB
	a=$((ab + AUTOBOOT_MIB))
	b=$((a + BOOT_MIB))
	st=$((b + BOOT_MIB))
	total=$((st + state_mib))
	truncate -s ${total}M $img
	sfdisk -q $img <<-TABLE
	label: dos
	label-id: $DISK_ID
	start=${ab}MiB, size=${AUTOBOOT_MIB}MiB, type=c, bootable
	start=${a}MiB, size=${BOOT_MIB}MiB, type=c
	start=${b}MiB, size=${BOOT_MIB}MiB, type=c
	start=${st}MiB, type=83
	TABLE
	# Partition 1: autoboot.txt, which the firmware reads to pick a slot.
	fat 32 "$AUTOBOOT_LABEL" /work/autoboot.vfat $AUTOBOOT_MIB
	printf '%s' "$AUTOBOOT" > /work/autoboot.txt
	touch -d "@$SOURCE_DATE_EPOCH" /work/autoboot.txt
	mcopy -m -i /work/autoboot.vfat /work/autoboot.txt ::/
	dd if=/work/autoboot.vfat of=$img bs=1M seek=$ab conv=notrunc,sparse status=none
	# Slot A: this version; slot B: empty until the first upgrade.
	dd if=/in/boot/boot.vfat of=$img bs=1M seek=$a conv=notrunc,sparse status=none
	fat 32 "$BOOT_LABEL" /work/empty.vfat $BOOT_MIB
	dd if=/work/empty.vfat of=$img bs=1M seek=$b conv=notrunc,sparse status=none
	# The state filesystem is made in place, at its partition's offset.
	# 4 KiB blocks: the filesystem grows to the whole card on first boot,
	# and a block size cannot change then.
	mke2fs -q -t ext4 -b 4096 -L "$STATE_LABEL" -U $STATE_UUID -E hash_seed=$STATE_UUID,root_owner=0:0,offset=$((st * 1048576)) \
		-d $s $img ${state_mib}M
	# It holds the nodes' secrets.
	chmod 0600 "$img"
	echo "image: ${total} MiB (autoboot ${AUTOBOOT_MIB} MiB, 2 boot slots of ${BOOT_MIB} MiB, state ${state_mib} MiB)"
}

case "${1:-}" in
boot) boot ;;
disk) disk ;;
*) echo "usage: $0 boot|disk" >&2; exit 2 ;;
esac
