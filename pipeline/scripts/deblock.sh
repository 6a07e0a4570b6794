#!/bin/sh
# Resolves Debian packages against the mirror with a native apt configured
# for the target architecture and an empty system, and prints a lock line
# per package: "package version pool-path size sha256".
#
#   deblock.sh [--only REGEX] APT-INSTALL-ARGUMENTS...
#
# --only keeps the packages whose names match REGEX (to pin a few packages
# without their dependencies). Environment: MIRROR, ARCH, SUITES,
# COMPONENTS. Runs in a step's /work.
set -eu
only='.*'
if [ "${1:-}" = --only ]; then only=$2; shift 2; fi
a=/work/apt
mkdir -p $a/etc/apt/apt.conf.d $a/etc/apt/preferences.d $a/etc/apt/sources.list.d $a/state/lists/partial $a/cache/archives/partial
: > $a/state/status
for s in $SUITES; do
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $s $COMPONENTS"
done > $a/etc/apt/sources.list
cat > $a/apt.conf <<CONF
Dir::Etc "$a/etc/apt"; Dir::State "$a/state"; Dir::State::status "$a/state/status"; Dir::Cache "$a/cache";
APT::Architecture "$ARCH"; APT::Architectures { "$ARCH"; }; Acquire::Languages "none";
APT::Install-Recommends "false"; Debug::NoLocking "true"; Acquire::ForceHash "SHA256";
CONF
export APT_CONFIG=$a/apt.conf
apt-get update -qq
apt-get install -qq -s "$@" > /work/simulated
awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2, $3 }' /work/simulated | grep -E "^($only) " | sort > /work/versions
apt-get install -qq --print-uris "$@" > /work/uris.raw
awk -v mirror="$MIRROR/" '{
	url=$1; gsub("\047", "", url); sub(mirror, "", url)
	gsub(/%2[bB]/, "+", url); gsub(/%3[aA]/, ":", url); gsub(/%7[eE]/, "~", url)
	split($2, f, "_"); sub(/^SHA256:/, "", $4)
	print f[1], url, $3, $4
}' /work/uris.raw | sort > /work/uris
join /work/versions /work/uris > /work/lock
n=$(wc -l < /work/lock)
if [ "$n" -eq 0 ] || [ "$n" != "$(wc -l < /work/versions)" ]; then
	echo "deblock: nothing resolved, or versions and downloads disagree" >&2
	exit 1
fi
cat /work/lock
