#!/bin/sh
# Builds the test rootkit module against the Debian headers of the test kernel.
# Usage: build.sh MANIFEST DEB_DIR OUT_KO [TOOLCHAIN_MANIFEST]
#   MANIFEST lists linux-headers-<abi>-cloud-amd64, linux-headers-<abi>-common and the linux-kbuild
#   package they depend on (fetch-debs.sh format); the ABI is taken from the manifest, so any Debian
#   kernel works.
#   TOOLCHAIN_MANIFEST (for a kernel of another suite than the host's): that suite's compiler the
#   headers name, its libc and the libraries it and the kbuild tools need. They are unpacked next
#   to the headers and every program among them runs through that libc's own dynamic loader: they
#   need a newer glibc than the host's, and the module is then built by the very compiler that
#   built the kernel (its flags, its GCC_VERSION checks in the headers).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
manifest=$1; debs=$2; out=$3; toolchain=${4:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmictl-rk.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
for f in $(awk '$1 ~ /^linux-(headers|kbuild)-/ {print $4}' "$manifest"); do dpkg-deb -x "$debs/$f" "$root"; done
kdir=$(ls -d "$root"/usr/src/linux-headers-*-cloud-amd64 2>/dev/null | head -n 1)
[ -n "$kdir" ] || { echo "rootkit: no linux-headers-*-cloud-amd64 in $manifest" >&2; exit 1; }
# the Makefile names the common headers (and, since 7.x, its own directory as KBUILD_OUTPUT) by
# absolute path: point those at the extracted copy
sed -i "s|/usr/src/linux-headers-|$root/usr/src/linux-headers-|g" "$kdir/Makefile"

if [ -n "$toolchain" ]; then
  for f in $(awk '{print $4}' "$toolchain"); do dpkg-deb -x "$debs/$f" "$root"; done
  loader=$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
  [ -x "$loader" ] || { echo "rootkit: no libc (ld-linux-x86-64.so.2) in $toolchain" >&2; exit 1; }
  libs=$root/usr/lib/x86_64-linux-gnu
  # each dynamically linked program becomes a script running it through the private loader;
  # argv[0] stays the path it was called by: gcc finds cc1 from it, modpost and objtool their
  # .real-*; the program itself is named by its own path (binutils calls `ld` through a symlink)
  for f in $(find "$root/usr/bin" "$root/usr/libexec" "$root"/usr/lib/linux-kbuild-* -type f -perm -u+x ! -name '*.so*' 2>/dev/null); do
    readelf -l "$f" 2>/dev/null | grep -q 'program interpreter' || continue
    mv "$f" "$f.elf"
    printf '#!/bin/sh\nexec "%s" --library-path "%s" --argv0 "$0" "%s.elf" "$@"\n' "$loader" "$libs" "$f" > "$f"
    chmod 755 "$f"
  done
  PATH=$root/usr/bin:$PATH
fi

# the compiler that built the kernel, as the headers' config names it (gcc-12 on Debian 12,
# x86_64-linux-gnu-gcc-14 on Debian 13): the host's or the toolchain's
cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$kdir/.config" | head -n 1)
command -v "$cc" >/dev/null 2>&1 || { echo "rootkit: the kernel's compiler '$cc' is neither on the host nor in a toolchain manifest" >&2; exit 1; }
mkdir -p "$work/src"; cp "$here/Kbuild" "$here/vmictl_rk.c" "$work/src/"
# no BTF for the module: it would take the host's pahole, which may not know the headers' options;
# the temporary directory's name kept out of the debug info, which the build id is a hash of
make -s -C "$kdir" M="$work/src" CC="$cc" CONFIG_DEBUG_INFO_BTF_MODULES= KCFLAGS="-ffile-prefix-map=$work=/vmictl-rk" modules >&2
strip --strip-debug -o "$out" "$work/src/vmictl_rk.ko"
