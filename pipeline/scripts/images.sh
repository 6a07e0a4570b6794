#!/bin/sh
# The k3s-images step: stages the image tarballs the version carries for
# k3s (/in/images, pinned) into /out/images as they are, and lists what
# each holds into /out/lists/<name>.manifest.json (docker's) and
# <name>.index.json (OCI's), whichever it has, for the image's manifest
# and SBOM (the step's Go check reads them).
set -eu
mkdir -p /out/images /out/lists
for f in /in/images/*; do
	n=$(basename "$f")
	cp "$f" /out/images/
	case "$n" in
	*.tar.zst) dec="zstd -dcq" ;;
	*.tar.gz | *.tgz) dec="gzip -dc" ;;
	*.tar) dec="cat" ;;
	*) echo "$n: not an image tarball (.tar, .tar.gz, .tgz, .tar.zst)" >&2; exit 1 ;;
	esac
	rm -rf /work/l && mkdir -p /work/l
	# One pass: tar says which of the two names it did not find.
	$dec "$f" | tar -x -C /work/l -f - manifest.json index.json 2>/dev/null || true
	for j in manifest index; do
		if [ -f /work/l/$j.json ]; then cp /work/l/$j.json "/out/lists/$n.$j.json"; fi
	done
	echo "$n: $(du -m "$f" | cut -f1) MiB"
done
