#!/bin/sh
# Starts or stops the test VM.
#   run.sh start [RUN_DIR]   boot QEMU in the background, wait for the guest to say it is ready,
#                            print and write RUN_DIR/vm.env (VMICTL_QMP, VMICTL_GDB, VMICTL_GROUND_TRUTH)
#   run.sh stop [RUN_DIR]    end the QEMU this script started (by its pid file), nothing else
# Environment: ACCEL=tcg|kvm (default tcg), SMP (2), MEM (512), CPU (max,la57=off),
#   APPEND (extra kernel arguments; default pti=on, so user-mode CR3s are KPTI user halves), READY_TIMEOUT seconds (180), IMAGE_DIR (./build), GDB=unix|tcp,
#   BOOT_ATTEMPTS (2): a guest kernel that panics while booting, before any of vmictl runs, is booted again
#   (TCG has been seen, rarely, to crash a 6.12 kernel at boot); its console is kept as console.panic-N.log
# An IMAGE_DIR holding disk.raw (the distro VM, make distro-image) boots that disk instead: its own
#   vmlinuz and initrd.img, root on a virtio disk that is a fresh qcow2 overlay in RUN_DIR (the image is
#   never written), MEM 2048 and READY_TIMEOUT 900 by default.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
run=${2:-$here/run}
image=${IMAGE_DIR:-$here/build}
mkdir -p "$run"
run=$(cd "$run" && pwd)

stop_vm() {
  [ -f "$run/qemu.pid" ] || { echo "run.sh: no VM started from $run" >&2; return 0; }
  pid=$(cat "$run/qemu.pid")
  # only end it if that pid is still the QEMU we started (pid files outlive their processes)
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$run/qmp.sock"; then
    kill "$pid" 2>/dev/null || true
    i=0; while [ -d "/proc/$pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$run/qemu.pid" "$run/qmp.sock" "$run/gdb.sock" "$run/control.sock" "$run/vm.env" "$run/disk.qcow2"
}

case "$cmd" in
  stop) stop_vm; exit 0 ;;
  start) ;;
  *) echo "usage: run.sh start|stop [RUN_DIR]" >&2; exit 2 ;;
esac

if [ -f "$image/disk.raw" ]; then
  [ -f "$image/vmlinuz" ] && [ -f "$image/initrd.img" ] || { echo "run.sh: no kernel and initramfs beside $image/disk.raw" >&2; exit 1; }
  disk=$image/disk.raw
  initrd=$image/initrd.img
  # the root is on the disk; AppArmor is named so that it is the LSM whatever the kernel's default
  root_args="root=/dev/vda rw apparmor=1 security=apparmor systemd.show_status=false"
  mem=${MEM:-2048}; timeout=${READY_TIMEOUT:-900}
else
  [ -f "$image/vmlinuz" ] && [ -f "$image/initrd.cpio.gz" ] || { echo "run.sh: no image in $image (make -C test-vms image)" >&2; exit 1; }
  disk=; initrd=$image/initrd.cpio.gz; root_args=; mem=${MEM:-512}; timeout=${READY_TIMEOUT:-180}
fi
stop_vm

accel=${ACCEL:-tcg}
if [ "$accel" = kvm ] && ! [ -w /dev/kvm ]; then echo "run.sh: ACCEL=kvm but /dev/kvm is not usable" >&2; exit 1; fi
if [ "${GDB:-unix}" = tcp ]; then
  # an ephemeral loopback port: the gdbstub gives full control of the VM, never bind beyond 127.0.0.1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  gdbdev="tcp:127.0.0.1:$port,server=on,wait=off"; gdbaddr="tcp:127.0.0.1:$port"
else
  gdbdev="unix:$run/gdb.sock,server=on,wait=off"; gdbaddr="unix:$run/gdb.sock"
fi

# a vCPU stuck in the kernel for a minute or more: seen a few times under TCG in runc's first
# steps, with both vCPUs spinning for good (shorter lockups are the host's load, and pass)
lockup='BUG: soft lockup - CPU#[0-9]* stuck for \([6-9][0-9]\|[0-9][0-9][0-9][0-9]*\)s'
attempt=1
while :; do
  start=$(date +%s)
  rm -f "$run/console.log" "$run/ground-truth.json"
  set --
  if [ -n "$disk" ]; then
    # each boot starts from the image as built: writes go to a throwaway overlay
    rm -f "$run/disk.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$disk" "$run/disk.qcow2"
    set -- -drive "file=$run/disk.qcow2,format=qcow2,if=virtio,cache=unsafe"
  fi
  qemu-system-x86_64 \
    -name vmictl-test -machine pc -accel "$accel" -cpu "${CPU:-max,la57=off}" -smp "${SMP:-2}" -m "$mem" \
    -kernel "$image/vmlinuz" -initrd "$initrd" "$@" \
    -append "console=ttyS0 panic=-1 loglevel=4 $root_args ${APPEND-pti=on}" \
    -display none -nodefaults -no-user-config -no-reboot \
    -serial "file:$run/console.log" -serial "file:$run/ground-truth.json" \
    -chardev "socket,id=control,path=$run/control.sock,server=on,wait=off" -serial chardev:control \
    -qmp "unix:$run/qmp.sock,server=on,wait=off" \
    -gdb "$gdbdev" \
    -device vmcoreinfo \
    -daemonize -pidfile "$run/qemu.pid"

  while :; do
    if grep -q '^VMICTL-READY' "$run/console.log" 2>/dev/null; then break; fi
    if grep -q "^VMICTL-FAILED\\|Kernel panic\\|$lockup" "$run/console.log" 2>/dev/null || ! [ -d "/proc/$(cat "$run/qemu.pid" 2>/dev/null || echo x)" ] \
       || [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
      echo "run.sh: the test VM did not become ready (after $(( $(date +%s) - start )) s); serial console tail:" >&2
      tail -n 40 "$run/console.log" >&2 2>/dev/null || true
      # a panic, or vCPUs that stopped making progress: the same image boots again
      panicked=$(grep -c "Kernel panic\\|$lockup" "$run/console.log" 2>/dev/null || true)
      stop_vm
      if [ "${panicked:-0}" -gt 0 ] && [ "$attempt" -lt "${BOOT_ATTEMPTS:-2}" ]; then
        cp "$run/console.log" "$run/console.panic-$attempt.log" 2>/dev/null || true
        echo "run.sh: the guest kernel panicked or locked up while booting (attempt $attempt); booting it again" >&2
        attempt=$((attempt + 1))
        continue 2
      fi
      exit 1
    fi
    sleep 0.5
  done
  break
done
# the guest says READY after it wrote the ground truth, but QEMU's file may lag a moment
want=$(sed -n 's/^VMICTL-READY \([0-9]*\).*/\1/p' "$run/console.log" | head -n 1)
i=0; while [ "$(wc -c < "$run/ground-truth.json")" -lt "${want:-1}" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done

cat > "$run/vm.env" <<ENV
VMICTL_QMP=unix:$run/qmp.sock
VMICTL_GDB=$gdbaddr
VMICTL_GROUND_TRUTH=$run/ground-truth.json
VMICTL_CONTROL=unix:$run/control.sock
ENV
echo "run.sh: test VM ready in $(( $(date +%s) - start )) s (pid $(cat "$run/qemu.pid"), $accel)" >&2
cat "$run/vm.env"
