#!/bin/sh
# Builds the distro test VM: a Debian 12 disk image made by mmdebstrap (systemd, AppArmor, docker,
# containerd, podman, the bookworm cloud kernel), and that image's own kernel and initramfs,
# extracted for QEMU's -kernel/-initrd.
# Usage: build.sh OUT_DIR DEB_CACHE
#   OUT_DIR/disk.raw (ext4, the root file system), vmlinuz, initrd.img, manifest.txt
#   DEB_CACHE keeps every downloaded .deb between builds (apt's archive, synced in and out).
# Every package installed is checked against packages.lock (package, version, arch, sha256 of the
# .deb): a version seen before whose .deb has another checksum is refused; a new one is recorded.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1; cache=$2
lock=$here/packages.lock
mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd); cache=$(cd "$cache" && pwd)
# the tree is built outside the repository (tsc and the like would walk into its mounted /proc)
root=$(mktemp -d "${TMPDIR:-/tmp}/vmictl-distro-root.XXXXXX")
trap 'rm -rf "$root"' EXIT
rm -f "$out/disk.raw" "$out/vmlinuz" "$out/initrd.img"
touch "$lock"
include=$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')

# No mirror named: for a stable suite mmdebstrap takes Debian's own, with its updates and security suites.
# essential/unlink is skipped so that the essential packages' .debs stay for the sync-out.
mmdebstrap --mode=root --variant=minbase --include="$include" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $cache /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $cache" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package} \${Version} \${Architecture}\n' > $out/installed.txt" \
  --customize-hook="$here/customize.sh \"\$1\" $here" \
  bookworm "$root"

# the resolved set: every installed package with the sha256 of the .deb it came from
: > "$out/manifest.txt.tmp"
while read -r pkg ver arch; do
  file=$(ls "$cache/${pkg}_"*"_$arch.deb" 2>/dev/null | while read -r f; do
    [ "$(dpkg-deb -f "$f" Version)" = "$ver" ] && { echo "$f"; break; }; done)
  [ -n "$file" ] || { echo "distro: no .deb of $pkg $ver in $cache" >&2; exit 1; }
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  known=$(awk -v p="$pkg" -v v="$ver" -v a="$arch" '$1==p && $2==v && $3==a {print $4}' "$lock")
  if [ -n "$known" ] && [ "$known" != "$sum" ]; then
    echo "distro: REFUSING $pkg $ver: sha256 $sum of $(basename "$file") differs from the recorded $known" >&2
    exit 1
  fi
  [ -n "$known" ] || { echo "distro: recording $pkg $ver in packages.lock" >&2; printf '%s %s %s %s\n' "$pkg" "$ver" "$arch" "$sum" >> "$lock"; }
  printf '%s %s %s %s\n' "$pkg" "$ver" "$arch" "$sum" >> "$out/manifest.txt.tmp"
done < "$out/installed.txt"
mv "$out/manifest.txt.tmp" "$out/manifest.txt"

# the image's own kernel and initramfs, for -kernel/-initrd
kver=$(ls "$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
[ -n "$kver" ] && [ -f "$root/boot/initrd.img-$kver" ] || { echo "distro: no kernel and initramfs in /boot" >&2; exit 1; }
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
echo "$kver" > "$out/kernel-release"

# the root file system: ext4 made from the tree (owners, modes and xattrs kept), with room for
# the engines' images and containers
size=$(( $(du -sm "$root" | cut -f1) + 1024 ))
mkfs.ext4 -q -F -L vmictl-root -d "$root" "$out/disk.raw.tmp" "${size}M"
mv "$out/disk.raw.tmp" "$out/disk.raw"
rm -rf "$root"
echo "distro: built $out/disk.raw (${size} MiB), kernel $kver" >&2
