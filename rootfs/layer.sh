#!/bin/sh
# The image's root, cheap to redo: the base root (build.sh base) plus the
# agent, overlay/ and k3s (when given), packed as /out/rootfs.squashfs.
# Runs in the rootfs toolchain.
set -eu

layer() {
	r=/work/root
	cp -a /in/base/root $r
	install -m 0755 /in/agent/k3os-agent $r/usr/local/bin/k3os-agent
	(cd /in/overlay && tar --exclude=./README.md --owner=0 --group=0 --numeric-owner -cf - .) | tar -C $r -xpf -
	# Mount points of the initramfs: kernel modules, the state partition.
	mkdir -p $r/usr/lib/modules $r/k3os/state
	# /etc and /var are up to date with /usr: without these stamps the
	# first boot runs ldconfig, hwdb and catalog updates (ConditionNeedsUpdate),
	# 40 s and more on a Pi.
	for d in etc var; do
		echo "TIMESTAMP_NSEC=${SOURCE_DATE_EPOCH}000000000" > $r/$d/.updated
		touch -d "@$SOURCE_DATE_EPOCH" $r/$d/.updated
	done
	k3s="none"
	if [ -e /in/k3s ]; then
		install -m 0755 /in/k3s $r/usr/local/bin/k3s
		for l in kubectl crictl ctr; do ln -sf k3s $r/usr/local/bin/$l; done
		# k3s runs its own containerd.
		rm -f $r/etc/systemd/system/multi-user.target.wants/containerd.service
		k3s="$K3S_DESC"
	fi
	cat > $r/etc/k3os-release <<-EOF
	NAME=k3OS for Raspberry Pi 4
	VERSION=$VERSION
	K3S=$k3s
	BUILD_EPOCH=$SOURCE_DATE_EPOCH
	EOF
	cp $r/etc/k3os-release /out/k3os-release
	mksquashfs $r /out/rootfs.squashfs -comp zstd -Xcompression-level 15 -noappend -no-progress -quiet
	du -k /out/rootfs.squashfs | awk '{printf "rootfs.squashfs: %.1f MiB\n", $1/1024}'
}

layer
