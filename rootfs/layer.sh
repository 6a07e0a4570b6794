#!/bin/sh
# The image's root, cheap to redo: the base root (build.sh base) plus the
# agent, overlay/ and k3s (when given), packed as /out/rootfs.squashfs.
# Runs in the rootfs toolchain.
set -eu

# Where the files of a local k3s besides k3s itself go (K3S=file:DIR).
K3S_BIN=/usr/lib/k3s/bin

layer() {
	r=/work/root
	mkdir $r
	tar -C $r --numeric-owner --xattrs -xpf /in/base/root.tar
	install -m 0755 /in/agent/k3os-agent $r/usr/local/bin/k3os-agent
	# k3os (upgrade, rollback, status) is the agent under another name.
	ln -s k3os-agent $r/usr/local/bin/k3os
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
	# What Debian's packages switch on and a k3OS node does not run:
	# Wi-Fi is wpa_supplicant@wlan0, which the agent enables when a config
	# asks, not the D-Bus wpa_supplicant that holds network.target (and so
	# sshd) back; e2scrub checks LVM snapshots; the package database of a
	# read-only root needs no daily backup. The SSH generator binds sshd to
	# AF_VSOCK and a local AF_UNIX socket, and fails on boards without vsock.
	# Debian's containerd service: k3s runs its own containerd, and a node
	# without k3s has no use for one (it cost 3.4 s of a 2-core boot).
	for u in multi-user.target.wants/wpa_supplicant.service multi-user.target.wants/e2scrub_reap.service \
		multi-user.target.wants/containerd.service \
		timers.target.wants/e2scrub_all.timer timers.target.wants/dpkg-db-backup.timer; do
		rm "$r/etc/systemd/system/$u"
	done
	# Generators run before any unit, on every boot (each an emulated
	# start under QEMU): the node has no GPT root to discover, no
	# hibernation, rc.local, SysV scripts, offline updates or TPM.
	mkdir -p $r/etc/systemd/system-generators
	for g in ssh gpt-auto hibernate-resume rc-local sysv system-update tpm2; do
		ln -s /dev/null $r/etc/systemd/system-generators/systemd-$g-generator
	done
	k3s="none"
	if [ -d /in/k3s ]; then
		install -m 0755 /in/k3s/k3s $r/usr/local/bin/k3s
		for l in kubectl crictl ctr; do ln -sf k3s $r/usr/local/bin/$l; done
		# What a k3s that is not the self-extracting release needs beside
		# it (the release unpacks the same into its data directory):
		# k3s.service puts this directory first on k3s's PATH.
		for f in /in/k3s/*; do
			[ "${f##*/}" = k3s ] || install -D -m 0755 "$f" "$r$K3S_BIN/${f##*/}"
		done
		# The CNI plugins of the cni multicall binary, by the names k3s
		# calls them (it looks for them where host-local is on its PATH).
		if [ -e $r$K3S_BIN/cni ]; then
			for p in bandwidth bridge firewall flannel host-local loopback portmap; do
				[ -e $r$K3S_BIN/$p ] || ln -s cni $r$K3S_BIN/$p
			done
		fi
		k3s="$K3S_DESC"
	fi
	cat > $r/etc/k3os-release <<-EOF
	NAME="k3OS for Raspberry Pi 4"
	VERSION="$VERSION"
	K3S="$k3s"
	BUILD_EPOCH=$SOURCE_DATE_EPOCH
	EOF
	cp $r/etc/k3os-release /out/k3os-release
	mksquashfs $r /out/rootfs.squashfs -comp zstd -Xcompression-level 15 -noappend -no-progress -quiet
	check /out/rootfs.squashfs "$k3s"
}

# The size budget of the root, in MiB: what the Debian packages may grow to
# before someone decides, plus k3s when the image carries it.
BUDGET_MIB=110
K3S_BUDGET_MIB=90

# check SQUASHFS K3S: what must and must not be in the root, read back with
# unsquashfs, and its size against the budget.
check() {
	unsquashfs -lls "$1" > /work/listing
	for p in /usr/local/bin/k3os-agent /usr/bin/containerd /usr/sbin/runc /usr/sbin/sshd /usr/lib/systemd/systemd /etc/k3os-release; do
		grep -q " squashfs-root$p\( \|$\)" /work/listing || { echo "root check: $p is missing" >&2; exit 1; }
	done
	if grep -q 'squashfs-root/etc/ssh/ssh_host_' /work/listing; then
		echo "root check: SSH host keys are baked in" >&2; exit 1
	fi
	grep -q ' 0 [0-9-]* [0-9:]* squashfs-root/etc/machine-id$' /work/listing || { echo "root check: /etc/machine-id is not empty" >&2; exit 1; }
	budget=$BUDGET_MIB
	[ "$2" = none ] || budget=$((BUDGET_MIB + K3S_BUDGET_MIB))
	size=$(du -k "$1" | cut -f1)
	echo "rootfs.squashfs: $((size / 1024)) MiB of a $budget MiB budget"
	[ $((size / 1024)) -le $budget ] || { echo "root check: over the size budget (rootfs/layer.sh)" >&2; exit 1; }
}

layer
