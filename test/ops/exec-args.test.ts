/** The parts of exec that need no VM: -u parsing, wait statuses. */
import t from 'tap';
import { parseUser } from '../../cli/commands/exec';
import { exitStatus } from '../../lib/inject/child';

t.test('-u UID[:GID]', async (t) => {
  t.same(parseUser('1000'), { uid: 1000, gid: undefined });
  t.same(parseUser('0:5'), { uid: 0, gid: 5 });
  for (const bad of ['root', '1000:', ':5', '-1', '99999999999', '1:2:3']) t.throws(() => parseUser(bad), { code: 'EUSAGE' }, bad);
});

t.test('wait statuses as a shell reports them', async (t) => {
  t.equal(exitStatus(7 << 8), 7, 'exit 7');
  t.equal(exitStatus(0), 0);
  t.equal(exitStatus(9), 137, 'killed by SIGKILL: 128 + 9');
  t.equal(exitStatus(15 | 0x80), 143, 'SIGTERM with a core dump flag');
});
