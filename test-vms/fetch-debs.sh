#!/bin/sh
# Downloads the Debian packages the test VM is built from into the cache, verifies each against
# packages.lock (package, version, sha256) and refuses a download whose checksum changed for a
# version already recorded there. A version seen for the first time is added to the lock.
# Usage: fetch-debs.sh CACHE_DIR MANIFEST_OUT PACKAGE...   (a package may be "@kernel" or "@kernel-dbg"
# or "@kernel-headers": resolved from the linux-image-cloud-amd64 meta package; "@kernel" may be
# several packages)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lock="$here/packages.lock"
cache=$1; manifest=$2; shift 2
mkdir -p "$cache"
touch "$lock"

kernel_abi() {
  # linux-image-cloud-amd64 depends on linux-image-<abi>-cloud-amd64: that names the current kernel
  apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: linux-image-\(.*\)-cloud-amd64$/\1/p' | head -n 1
}

has_candidate() {
  v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  [ -n "$v" ] && [ "$v" != "(none)" ]
}

# The packages that hold the kernel image and its config. Debian has two layouts: a package
# linux-image-<abi>-cloud-amd64-unsigned with /boot/vmlinuz-* (up to 6.x), or
# linux-image-<abi>-cloud-amd64 as a metapackage over linux-binary-<abi>-cloud-amd64
# (/usr/lib/modules/<abi>/vmlinuz), linux-base-<abi>-cloud-amd64 (its config) and the modules,
# which the test VM does not need (build-image.sh finds the files by where they are).
kernel_packages() {
  if has_candidate "linux-image-$1-cloud-amd64-unsigned"; then echo "linux-image-$1-cloud-amd64-unsigned"; return; fi
  echo "linux-image-$1-cloud-amd64"
  apt-cache depends "linux-image-$1-cloud-amd64" 2>/dev/null | sed -n 's/^ *Depends: \(linux-[a-z]*-.*\)$/\1/p' \
    | grep -F -x -e "linux-binary-$1-cloud-amd64" -e "linux-base-$1-cloud-amd64" || true
}

resolve() {
  case "$1" in
    @kernel|@kernel-dbg|@kernel-headers)
      abi=$(kernel_abi)
      [ -n "$abi" ] || { echo "fetch-debs: cannot resolve the kernel ABI (run 'apt-get update')" >&2; exit 1; }
      case "$1" in
        @kernel) kernel_packages "$abi" ;;
        @kernel-dbg) echo "linux-image-$abi-cloud-amd64-dbg" ;;
        @kernel-headers) echo "linux-headers-$abi-cloud-amd64" ;;
      esac ;;
    *) echo "$1" ;;
  esac
}

: > "$manifest.tmp"
for spec in "$@"; do
 for pkg in $(resolve "$spec"); do
  ver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    echo "fetch-debs: no candidate version for $pkg (run 'apt-get update')" >&2; exit 1
  fi
  file="$cache/${pkg}_$(echo "$ver" | sed 's/:/%3a/')_amd64.deb"
  # an architecture-independent package (the common kernel headers) is named _all.deb
  [ -s "$file" ] || [ ! -s "${file%_amd64.deb}_all.deb" ] || file="${file%_amd64.deb}_all.deb"
  if [ ! -s "$file" ]; then
    echo "fetch-debs: downloading $pkg $ver" >&2
    (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) || { echo "fetch-debs: download of $pkg=$ver failed" >&2; exit 1; }
    # apt names the file after the version with ':' escaped; find it whatever the escaping
    [ -s "$file" ] || file=$(ls "$cache/${pkg}_"*"_"*.deb 2>/dev/null | grep -F "$(echo "$ver" | sed 's/^[0-9]*://')" | head -n 1)
  fi
  [ -n "$file" ] && [ -s "$file" ] || { echo "fetch-debs: $pkg $ver not found in cache after download" >&2; exit 1; }
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  known=$(awk -v p="$pkg" -v v="$ver" '$1==p && $2==v {print $3}' "$lock")
  if [ -n "$known" ] && [ "$known" != "$sum" ]; then
    echo "fetch-debs: REFUSING $pkg $ver: sha256 $sum differs from the recorded $known" >&2
    rm -f "$file"
    exit 1
  fi
  if [ -z "$known" ]; then
    echo "fetch-debs: recording $pkg $ver in packages.lock" >&2
    printf '%s %s %s\n' "$pkg" "$ver" "$sum" >> "$lock"
  fi
  printf '%s %s %s %s\n' "$pkg" "$ver" "$sum" "$(basename "$file")" >> "$manifest.tmp"
 done
done
mv "$manifest.tmp" "$manifest"
