#!/bin/sh
# mmdebstrap customize hook: makes the tree a quiet test host. Usage: customize.sh ROOT DISTRO_DIR
set -eu
root=$1; here=$2
vm=$(cd "$here/.." && pwd)
install -d "$root/usr/lib/vmictl" "$root/etc/docker"
install -m 0755 "$here/guest/containers" "$here/guest/ground-truth" "$vm/guest/control-shell" "$root/usr/lib/vmictl/"
install -m 0644 "$vm/guest/ground-truth.awk" "$root/usr/lib/vmictl/"
install -m 0644 "$here/guest/daemon.json" "$root/etc/docker/daemon.json"
install -m 0644 "$here/guest/vmictl-containers.service" "$here/guest/vmictl-control.service" "$root/etc/systemd/system/"
ln -sf /etc/systemd/system/vmictl-containers.service "$root/etc/systemd/system/multi-user.target.wants/vmictl-containers.service"
ln -sf /etc/systemd/system/vmictl-control.service "$root/etc/systemd/system/multi-user.target.wants/vmictl-control.service"

# the containers' image: a busybox root file system from Debian's busybox-static, as a tarball
# that docker and podman import at boot
bb=$(mktemp -d)
install -d "$bb/bin" "$bb/etc" "$bb/proc" "$bb/sys" "$bb/dev" "$bb/tmp" "$bb/root"
install -m 0755 "$root/bin/busybox" "$bb/bin/busybox"
for applet in $(chroot "$root" /bin/busybox --list); do [ -e "$bb/bin/$applet" ] || ln -s busybox "$bb/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$bb/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$bb/etc/group"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$bb" -cf "$root/usr/lib/vmictl/busybox.tar" .
rm -rf "$bb"

echo vmictl-distro > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vmictl-distro\n' > "$root/etc/hosts"
: > "$root/etc/fstab"
# root logs in on the console with no password (a throwaway test guest reached only through QEMU)
chroot "$root" passwd -d root >/dev/null
# quiet as a real host is between jobs: no timers, a volatile journal
for unit in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer e2scrub_reap.service \
    systemd-tmpfiles-clean.timer dpkg-db-backup.timer man-db.timer logrotate.timer podman-auto-update.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
install -d "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' > "$root/etc/systemd/journald.conf.d/vmictl.conf"
