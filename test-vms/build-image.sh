#!/bin/sh
# Builds the test VM (kernel + initramfs) from the Debian packages listed in MANIFEST.
# Usage: build-image.sh MANIFEST DEB_DIR OUT_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
manifest=$1; debs=$2; out=$3
export SOURCE_DATE_EPOCH=0 LC_ALL=C
work="$out/work"
rm -rf "$work"; mkdir -p "$work/pkgs" "$work/root"

deb_of() { awk -v p="$1" '$1==p {print $4}' "$manifest"; }
extract() { # package -> extracted dir
  f=$(deb_of "$1"); [ -n "$f" ] || { echo "build-image: $1 is not in $manifest" >&2; exit 1; }
  mkdir -p "$work/pkgs/$1"; dpkg-deb -x "$debs/$f" "$work/pkgs/$1"; echo "$work/pkgs/$1"
}

# The kernel packages (fetch-debs.sh @kernel), found by what they hold: the image is
# /boot/vmlinuz-<abi> with /boot/config-<abi> (Debian up to 6.x), or /usr/lib/modules/<abi>/vmlinuz
# with its config beside it (7.x, linux-binary-* and linux-base-*).
kpkg=; kimage=; kconfig=
for p in $(awk '$1 ~ /^linux-(image|binary|base)-/ {print $1}' "$manifest"); do
  d=$(extract "$p")
  for f in "$d"/boot/vmlinuz-* "$d"/usr/lib/modules/*/vmlinuz "$d"/usr/lib/modules/*/vmlinuz.unsigned; do
    [ -f "$f" ] && [ ! -L "$f" ] && { [ -z "$kimage" ] || { echo "build-image: two kernel images ($kimage, $f)" >&2; exit 1; }; kimage=$f; kpkg=$p; }
  done
  for f in "$d"/boot/config-* "$d"/usr/lib/modules/*/config; do [ -f "$f" ] && kconfig=$f; done
done
[ -n "$kimage" ] || { echo "build-image: no kernel image in the linux-* packages of $manifest" >&2; exit 1; }
[ -n "$kconfig" ] || { echo "build-image: no kernel config in the linux-* packages of $manifest" >&2; exit 1; }
cp "$kimage" "$out/vmlinuz"
cp "$kconfig" "$out/kernel.config"
rm -rf "$work/pkgs"/linux-*   # the modules are not needed: everything the VM uses is built in

bb=$(extract busybox-static)/bin/busybox
rc=$(extract runc)/usr/sbin/runc
seccomp=$(extract libseccomp2)
libc=$(extract libc6)

root="$work/root"
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib/vmictl "$root"/etc \
  "$root"/lib/x86_64-linux-gnu "$root"/lib64 "$root"/proc "$root"/sys "$root"/dev "$root"/run "$root"/tmp \
  "$root"/newroot "$root"/var/log "$root"/containers

install_busybox() { # rootdir
  cp "$bb" "$1/bin/busybox"
  for a in $("$bb" --list-full); do
    [ "$a" = bin/busybox ] && continue
    mkdir -p "$1/$(dirname "$a")"
    ln -sf /bin/busybox "$1/$a"
  done
}
install_busybox "$root"
cp "$rc" "$root/usr/sbin/runc"
cp -L "$seccomp"/usr/lib/x86_64-linux-gnu/libseccomp.so.2 "$root/lib/x86_64-linux-gnu/" 2>/dev/null \
  || cp -L "$seccomp"/lib/x86_64-linux-gnu/libseccomp.so.2 "$root/lib/x86_64-linux-gnu/"
cp -L "$libc"/lib/x86_64-linux-gnu/libc.so.6 "$root/lib/x86_64-linux-gnu/"
cp -L "$libc"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib/x86_64-linux-gnu/"
ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"

g="$here/guest"
cp "$g/init" "$root/init"
cp "$g/inittab" "$g/rc.sysinit" "$g/rc.containers" "$root/etc/"
cp "$g/busyd" "$root/sbin/busyd"
cp "$g/control-shell" "$root/sbin/control-shell"
cp "$g/ground-truth" "$g/ground-truth.awk" "$g/bench-containers" "$root/usr/lib/vmictl/"
# the integrity tests' rootkit, loaded by those tests only (test-vms/rootkit)
if [ -f "$out/vmictl_rk.ko" ]; then cp "$out/vmictl_rk.ko" "$root/usr/lib/vmictl/"; fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

for cdir in "$here"/containers/*/; do
  name=$(basename "$cdir")
  . "$cdir/container.conf"
  if [ "$runtime" = runc ]; then id=$name; else id=$(printf '%s' "vmictl-test-$name" | sha256sum | cut -c1-64); fi
  pod=$(printf '%s' "pod-$name" | md5sum | sed 's/^\(........\)\(....\)\(....\)\(....\)\(............\).*/\1_\2_\3_\4_\5/')
  bundle="$root/containers/$name"
  mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc" "$bundle/rootfs/tmp" "$bundle/rootfs/proc" "$bundle/rootfs/sys" "$bundle/rootfs/dev"
  install_busybox "$bundle/rootfs"
  cp "$cdir/workload.sh" "$bundle/rootfs/workload.sh"
  echo "$hostname" > "$bundle/rootfs/etc/hostname"
  cp "$root/etc/passwd" "$root/etc/group" "$bundle/rootfs/etc/"
  echo "$id" > "$bundle/id"; echo "$name" > "$bundle/name"; echo "$runtime" > "$bundle/runtime"
  cgpath=$(printf '%s' "$cgroups_path" | sed -e "s/@ID@/$id/g" -e "s/@POD@/$pod/g")
  "$here/oci-config.sh" "$hostname" "$cgpath" "$caps" > "$bundle/config.json"
done

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . | sort | cpio -o -H newc --reproducible -R 0:0 --quiet) | gzip -9 -n > "$out/initrd.cpio.gz"
rm -rf "$work"
echo "build-image: $(du -h "$out/initrd.cpio.gz" | cut -f1) initramfs, kernel $(basename "$kpkg")" >&2
