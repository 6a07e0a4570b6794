#!/bin/sh
# Builds the Debian arm64 root of the image, inside the rootfs toolchain
# (the same commands under the host and the Dagger engine).
#
#   build.sh lock   resolve packages.list against the mirror ($MIRROR) and
#                   write /out/packages.lock: every package of the root with
#                   its version, pool path, size and sha256
#   build.sh base   install exactly the locked packages (debs handed in at
#                   /in/debs, no network) into /out/root.tar (a tar keeps
#                   owners and modes through any engine's export)
#
# The cheap last layer (agent, overlay/, k3s) is layer.sh, so that changing
# it does not rebuild this.
#
# Why not plain mmdebstrap: ~97% of an emulated arm64 build is dpkg and
# maintainer scripts under qemu-user. The biggest single costs are replaced
# by native equivalents (ca-certificates) or skipped (hwdb, sshd host keys,
# which must not be baked into an image anyway); see docs/benchmarks.md.
set -eu

SUITE=trixie
ARCH=arm64
COMPONENTS="main non-free-firmware"
here=$(dirname "$0")

packages() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.list" | tr -s ' \n' ','  | sed 's/,$//'
}

lock() {
	# The Essential set plus the listed packages and their dependencies, as
	# mmdebstrap --variant=essential --include installs them (apt's
	# ?essential also matches apt itself, which is no part of this root).
	# shellcheck disable=SC2046
	SUITES="$SUITE $SUITE-updates" COMPONENTS=$COMPONENTS ARCH=$ARCH sh /in/scripts/deblock.sh \
		"?and(?essential,?architecture($ARCH),?not(?name(^apt\$)))" $(packages | tr , ' ') > /out/packages.lock
	echo "locked $(wc -l < /out/packages.lock) packages"
}

# Run the rest with arm64 binaries executable: through the host's qemu
# binfmt entry if it has one, else through a private binfmt_misc in a user
# namespace (Linux >= 6.7), registered from this toolchain's qemu-user.
with_arm64() {
	if arch-test -n $ARCH >/dev/null 2>&1 || [ -n "${K3OS_BINFMT:-}" ]; then
		"$@"
		return
	fi
	K3OS_BINFMT=1 unshare --user --map-users=0,0,65536 --map-groups=0,0,65536 --mount -- sh -euc '
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || {
			echo "cannot run arm64 binaries: this kernel has no private binfmt_misc (Linux < 6.7) and" >&2
			echo "no qemu binfmt entry is registered; on the build host run: apt-get install qemu-user-static" >&2
			exit 1; }
		cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
		exec "$@"' sh "$@"
}

# Commands whose work is done natively afterwards, or never: during the
# install they are diverted to /bin/true.
DIVERTED="/usr/sbin/update-ca-certificates /usr/bin/systemd-hwdb /usr/bin/ssh-keygen"

base() {
	root=/work/root
	# A repository of exactly the locked debs, as suite $SUITE (mmdebstrap
	# finds the Essential set by suite).
	repo=/work/repo
	mkdir -p $root $repo/pool $repo/dists/$SUITE/main/binary-$ARCH
	ln -s /in/debs/*.deb $repo/pool/
	(cd $repo && apt-ftparchive packages pool > dists/$SUITE/main/binary-$ARCH/Packages)
	apt-ftparchive -o APT::FTPArchive::Release::Suite=$SUITE -o APT::FTPArchive::Release::Codename=$SUITE \
		-o APT::FTPArchive::Release::Architectures=$ARCH -o APT::FTPArchive::Release::Components=main \
		release $repo/dists/$SUITE > /work/Release
	mv /work/Release $repo/dists/$SUITE/Release
	with_arm64 sh "$0" base-install $root
	echo "root size: $(du -k /out/root.tar | cut -f1) KiB"
}

base_install() {
	root=$1
	# The root is built in RAM: dpkg's many fsyncs cost nothing there.
	mount -t tmpfs -o mode=0755 tmpfs "$root"
	divert="for f in $DIVERTED; do mkdir -p \"\$1\${f%/*}\"; chroot \"\$1\" dpkg-divert --quiet --local --rename --divert \$f.k3os-real --add \$f; ln -sf /bin/true \"\$1\$f\"; done"
	undivert="for f in $DIVERTED; do rm -f \"\$1\$f\"; chroot \"\$1\" dpkg-divert --quiet --local --rename --remove \$f; done"
	mmdebstrap --mode=root --variant=essential --arch=$ARCH \
		--include="$(packages)" \
		--aptopt='Acquire::Languages "none"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--essential-hook="$divert" \
		--customize-hook="$undivert" \
		--customize-hook="sh $0 customize \"\$1\"" \
		$SUITE "$root" "deb [trusted=yes] copy:///work/repo $SUITE main"
	# No package manager state: apt is not in the root, and its lists
	# directory belongs to _apt or root depending on where it was built.
	rm -rf "$root/var/lib/apt" "$root/var/cache/apt"
	# Leave the tmpfs as a tar: owners, modes, links, xattrs, in name order,
	# times clamped as the squashfs will clamp them (so that the tar, too, is
	# the same bytes from any engine, any day).
	tar -C "$root" --sort=name --numeric-owner --xattrs --format=posix \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		--mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime -cf /out/root.tar .
	umount "$root"
}

# customize ROOT: native finishing work in the new root.
customize() {
	r=$1
	# The CA bundle and hash links, made by this toolchain's own (same
	# version, architecture-independent) update-ca-certificates.
	unshare --mount sh -euc '
		r=$1
		for d in /etc/ssl/certs /usr/share/ca-certificates; do mount --bind "$r$d" "$d"; done
		mount --bind "$r/etc/ca-certificates.conf" /etc/ca-certificates.conf
		mkdir -p "$r/usr/local/share/ca-certificates"
		mount --bind "$r/usr/local/share/ca-certificates" /usr/local/share/ca-certificates
		update-ca-certificates --fresh >/dev/null' sh "$r"
	# No host keys: every node makes its own on first boot.
	rm -f "$r"/etc/ssh/ssh_host_*
	# systemd-resolved's backup of the build machine's resolv.conf.
	rm -f "$r/etc/.resolv.conf.systemd-resolved.bak"
	echo k3os > "$r/etc/hostname"
	ln -sf ../run/systemd/resolve/stub-resolv.conf "$r/etc/resolv.conf"
	# Mount point of the state partition.
	mkdir -p "$r/k3os"
	rm -rf "$r/var/log/"*.log "$r/var/log/apt"
	# What was installed, for the SBOM, with the licenses named in each
	# package's machine-readable copyright file (where it has one).
	chroot "$r" dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n' | sort |
		while IFS="$(printf '\t')" read -r pkg ver arch src srcver; do
			lic=$(sed -n 's/^License: *\([^ ].*\)$/\1/p' "$r/usr/share/doc/$pkg/copyright" 2>/dev/null | sort -u | paste -sd'|' -)
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$pkg" "$ver" "$arch" "$src" "$srcver" "${lic:-NOASSERTION}"
		done > /out/packages.tsv
}

case "${1:-}" in
lock) lock ;;
base) base ;;
base-install) base_install "$2" ;;
customize) customize "$2" ;;
*) echo "usage: $0 lock|base" >&2; exit 2 ;;
esac
