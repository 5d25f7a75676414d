import t from 'tap';
import { matchCgroupPath, matchTaskCgroups, isFullHexId, MAX_CGROUP_PATH } from '../../lib/containers/runtime';

const ID = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';
const ID2 = '5293f1ed0f9ecd8b952b1d4875f940f00185b15ffdcf7f045c64caf1d9be5982';
const POD = '6ddaedfc-c235-dff0-3f3f-b46179bfa2a0';
const POD_ = POD.replace(/-/g, '_');

t.test('Docker', async (t) => {
  t.same(matchCgroupPath(`/system.slice/docker-${ID}.scope`), { runtime: 'docker', id: ID, cgroup: `/system.slice/docker-${ID}.scope` });
  t.same(matchCgroupPath(`/docker/${ID}`), { runtime: 'docker', id: ID, cgroup: `/docker/${ID}` });
  // Docker in Docker: the outermost container
  t.same(matchCgroupPath(`/docker/${ID}/docker/${ID2}`), { runtime: 'docker', id: ID, cgroup: `/docker/${ID}` });
  t.same(matchCgroupPath(`/docker/${ID}/init.scope`)?.id, ID, 'a sub-cgroup of the container');
  // rootless Docker under the user's systemd
  t.same(matchCgroupPath(`/user.slice/user-1000.slice/user@1000.service/user.slice/docker-${ID}.scope`)?.runtime, 'docker');
  t.equal(matchCgroupPath('/system.slice/docker.service'), null, 'dockerd itself');
  t.equal(matchCgroupPath('/docker'), null);
  t.equal(matchCgroupPath(`/docker/${ID.slice(0, 63)}`), null, '63 hex digits');
  t.equal(matchCgroupPath(`/docker/${ID.toUpperCase()}`), null, 'upper-case hex is not an id docker writes');
  t.equal(matchCgroupPath(`/system.slice/docker-${ID}.service`), null);
  t.equal(matchCgroupPath(`/system.slice/xdocker-${ID}.scope`), null);
});

t.test('containerd / CRI, systemd driver (test VM layout) with the pod uid', async (t) => {
  const path = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_}.slice/cri-containerd-${ID2}.scope`;
  t.same(matchCgroupPath(path), { runtime: 'containerd', id: ID2, podUid: POD, cgroup: path });
  const burst = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD_}.slice/cri-containerd-${ID2}.scope`;
  t.equal(matchCgroupPath(burst)?.podUid, POD, 'burstable');
  const guaranteed = `/kubepods.slice/kubepods-pod${POD_}.slice/cri-containerd-${ID2}.scope`;
  t.same(matchCgroupPath(guaranteed), { runtime: 'containerd', id: ID2, podUid: POD, cgroup: guaranteed }, 'guaranteed');
  t.equal(matchCgroupPath(`${path}/sub`)?.cgroup, path, 'the cgroup stops at the naming component');
  // static pods have a 32-hex-digit uid
  t.equal(matchCgroupPath(`/kubepods.slice/kubepods-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-${ID2}.scope`)?.podUid, '0123456789abcdef0123456789abcdef');
});

t.test('containerd / CRI, cgroupfs driver', async (t) => {
  t.same(matchCgroupPath(`/kubepods/besteffort/pod${POD}/${ID2}`), { runtime: 'containerd', id: ID2, podUid: POD, cgroup: `/kubepods/besteffort/pod${POD}/${ID2}` });
  t.same(matchCgroupPath(`/kubepods/burstable/pod${POD}/${ID2}`)?.podUid, POD);
  t.same(matchCgroupPath(`/kubepods/pod${POD}/${ID2}`)?.id, ID2, 'guaranteed: no qos level');
  t.equal(matchCgroupPath(`/kubepods/besteffort/pod${POD}`), null, 'the pod itself is no container');
  t.equal(matchCgroupPath('/kubepods/besteffort'), null);
  t.equal(matchCgroupPath(`/kubepods/besteffort/podnot-a-uid/${ID2}`), null);
  t.same(matchCgroupPath(`/kubepods-besteffort-pod${POD_}.slice:cri-containerd:${ID2}`), { runtime: 'containerd', id: ID2, podUid: POD, cgroup: `/kubepods-besteffort-pod${POD_}.slice:cri-containerd:${ID2}` });
  t.same(matchCgroupPath(`/default/${ID2}`), { runtime: 'containerd', id: ID2, cgroup: `/default/${ID2}` }, 'ctr in the default namespace');
  t.same(matchCgroupPath('/default/myctr')?.id, 'myctr');
  t.same(matchCgroupPath(`/system.slice/nerdctl-${ID2}.scope`)?.runtime, 'containerd');
});

t.test('CRI-O', async (t) => {
  const path = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD_}.slice/crio-${ID}.scope`;
  t.same(matchCgroupPath(path), { runtime: 'cri-o', id: ID, podUid: POD, cgroup: path });
  t.same(matchCgroupPath(`/kubepods/besteffort/pod${POD}/crio-${ID}`), { runtime: 'cri-o', id: ID, podUid: POD, cgroup: `/kubepods/besteffort/pod${POD}/crio-${ID}` });
  t.equal(matchCgroupPath(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD_}.slice/crio-conmon-${ID}.scope`), null, 'conmon');
});

t.test('Podman', async (t) => {
  t.same(matchCgroupPath(`/machine.slice/libpod-${ID}.scope`), { runtime: 'podman', id: ID, cgroup: `/machine.slice/libpod-${ID}.scope` });
  t.same(matchCgroupPath(`/machine.slice/libpod-${ID}.scope/container`)?.cgroup, `/machine.slice/libpod-${ID}.scope`);
  t.same(matchCgroupPath(`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`)?.runtime, 'podman', 'rootless');
  t.same(matchCgroupPath(`/libpod_parent/libpod-${ID}`), { runtime: 'podman', id: ID, cgroup: `/libpod_parent/libpod-${ID}` }, 'cgroupfs manager');
  t.same(matchCgroupPath(`/machine.slice/machine-libpod_pod_${ID2}.slice/libpod-${ID}.scope`), {
    runtime: 'podman',
    id: ID,
    podUid: ID2,
    cgroup: `/machine.slice/machine-libpod_pod_${ID2}.slice/libpod-${ID}.scope`,
  });
  t.equal(matchCgroupPath(`/machine.slice/libpod-conmon-${ID}.scope`), null, 'conmon is not the container');
  t.equal(matchCgroupPath('/libpod_parent/conmon'), null);
  t.equal(matchCgroupPath('/machine.slice'), null);
});

t.test('LXC', async (t) => {
  t.same(matchCgroupPath('/lxc/web1'), { runtime: 'lxc', id: 'web1', name: 'web1', cgroup: '/lxc/web1' });
  t.same(matchCgroupPath('/lxc/web1/ns/init.scope')?.id, 'web1');
  t.same(matchCgroupPath('/lxc.payload.web1'), { runtime: 'lxc', id: 'web1', name: 'web1', cgroup: '/lxc.payload.web1' });
  t.same(matchCgroupPath('/lxc.payload.web1/system.slice/cron.service')?.cgroup, '/lxc.payload.web1');
  t.equal(matchCgroupPath('/lxc.monitor.web1'), null, 'the monitor');
  t.equal(matchCgroupPath('/lxc'), null);
  t.equal(matchCgroupPath('/lxc.pivot'), null);
  t.equal(matchCgroupPath('/lxc.payload.'), null, 'no name');
  t.equal(matchCgroupPath('/lxc/bad\x1bname'), null, 'control characters are no name');
});

t.test('runc / crun', async (t) => {
  t.same(matchCgroupPath('/ticker'), { runtime: 'runc', id: 'ticker', name: 'ticker', cgroup: '/ticker', heuristic: true }, 'empty cgroupsPath');
  t.same(matchCgroupPath('/system.slice/runc-ticker.scope'), { runtime: 'runc', id: 'ticker', name: 'ticker', cgroup: '/system.slice/runc-ticker.scope' });
  for (const p of ['/', '', '/init.scope', '/system.slice', '/user.slice', '/machine.slice', '/sshd.service', '/docker', '/kubepods', '/ticker/sub', '/..', '/a b', '/x\x07']) {
    t.equal(matchCgroupPath(p), null, JSON.stringify(p));
  }
  t.equal(matchCgroupPath('/system.slice/cron.service'), null);
});

t.test('hostile and odd paths', async (t) => {
  t.equal(matchCgroupPath('/' + 'a/'.repeat(100)), null, 'too many components');
  t.equal(matchCgroupPath('/' + 'x'.repeat(MAX_CGROUP_PATH + 1)), null, 'too long');
  t.equal(matchCgroupPath(`//system.slice//docker-${ID}.scope`)?.cgroup, `/system.slice/docker-${ID}.scope`, 'empty components are ignored');
  t.equal(matchCgroupPath(`/system.slice/docker-${ID}.scope\n`), null, 'trailing newline');
  t.equal(matchCgroupPath(undefined as unknown as string), null);
});

t.test('a task: v2 first, then v1 hierarchies; a named runtime beats the runc heuristic', async (t) => {
  t.equal(matchTaskCgroups({ cgroup: `/system.slice/docker-${ID}.scope` })?.id, ID);
  t.equal(matchTaskCgroups({ cgroup: '/', cgroupV1: { memory: `/docker/${ID}`, 'name=systemd': `/docker/${ID}` } })?.runtime, 'docker');
  t.equal(matchTaskCgroups({ cgroup: '/', cgroupV1: { cpu: '/' } }), null);
  t.equal(matchTaskCgroups({ cgroup: '/stray', cgroupV1: { pids: `/docker/${ID}` } })?.runtime, 'docker', 'strong v1 match over a weak v2 one');
  t.equal(matchTaskCgroups({ cgroup: '/stray' })?.heuristic, true);
  t.equal(matchTaskCgroups({ cgroup: '/', cgroupV1: { 'name=systemd': '/lxc/c1', pids: `/docker/${ID}` } })?.runtime, 'lxc', 'name=systemd is asked first');
});

t.test('isFullHexId', async (t) => {
  t.ok(isFullHexId(ID));
  t.notOk(isFullHexId('ticker'));
  t.notOk(isFullHexId(ID + '0'));
});
