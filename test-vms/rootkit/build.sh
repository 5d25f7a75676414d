#!/bin/sh
# Builds the test rootkit module against the Debian headers of the test kernel.
# Usage: build.sh MANIFEST DEB_DIR OUT_KO
#   MANIFEST lists linux-headers-<abi>-cloud-amd64, linux-headers-<abi>-common and linux-kbuild-<x.y>
#   (fetch-debs.sh format); the ABI is taken from the manifest, so any Debian kernel works.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
manifest=$1; debs=$2; out=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/vmictl-rk.XXXXXX")
trap 'rm -rf "$work"' EXIT
for f in $(awk '$1 ~ /^linux-(headers|kbuild)-/ {print $4}' "$manifest"); do dpkg-deb -x "$debs/$f" "$work/root"; done
kdir=$(ls -d "$work"/root/usr/src/linux-headers-*-cloud-amd64 2>/dev/null | head -n 1)
[ -n "$kdir" ] || { echo "rootkit: no linux-headers-*-cloud-amd64 in $manifest" >&2; exit 1; }
# the Makefile includes the common headers by absolute path: point it at the extracted copy
sed -i "s|^include /usr/src/|include $work/root/usr/src/|" "$kdir/Makefile"
# the headers' compiler (gcc-12 on Debian 12); the common headers are reached by relative symlinks
cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(gcc-[0-9]*\) .*/\1/p' "$kdir/.config" | head -n 1)
command -v "$cc" >/dev/null 2>&1 || cc=gcc
mkdir -p "$work/src"; cp "$here/Kbuild" "$here/vmictl_rk.c" "$work/src/"
make -s -C "$kdir" M="$work/src" CC="$cc" modules >&2
strip --strip-debug -o "$out" "$work/src/vmictl_rk.ko"
