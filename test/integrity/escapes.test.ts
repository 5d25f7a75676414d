/**
 * Which helper paths (core_pattern, modprobe_path, uevent_helper) name a container's files: the
 * classic escapes write one of these shapes; the kernel's defaults and a host's own tools do not.
 */
import t from 'tap';
import { helperPathConcern } from '../../lib/integrity/escapes';

const roots = [
  { label: 'ticker', root: '/containers/ticker/rootfs' },
  { label: 'web', root: '/' },
];

t.test('the shapes container escapes write', (t) => {
  t.match(helperPathConcern('|/proc/%P/root/tmp/payload %p', roots), /\/proc\/<pid>\/root/, 'core_pattern through the crashing process\'s root');
  t.match(helperPathConcern('|/proc/1234/cwd/x', roots), /\/proc\/<pid>\/root/, 'through a fixed pid\'s cwd');
  t.match(helperPathConcern('|/var/lib/docker/overlay2/0123abcd/diff/cmd', roots), /runtime's file-system directory/, 'docker\'s overlay upper directory (from /etc/mtab inside the container)');
  t.match(helperPathConcern('/var/lib/containers/storage/overlay/abc/merged/sbin/x', roots), /runtime's file-system directory/, 'podman\'s');
  t.match(helperPathConcern('/containers/ticker/rootfs/tmp/modprobe', roots), /inside ticker's root file system \(\/containers\/ticker\/rootfs\/\)/, 'a runc bundle\'s rootfs, as its root dentry names it');
  t.end();
});

t.test('what is not a container\'s', (t) => {
  for (const v of ['core', '|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h', '/sbin/modprobe', '', '|/usr/share/apport/apport -p%p', '/containers/ticker/rootfs-other/x', '/proc/sys/kernel/x']) {
    t.equal(helperPathConcern(v, roots), undefined, JSON.stringify(v));
  }
  t.end();
});
