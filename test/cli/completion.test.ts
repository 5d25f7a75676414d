// `vmictl completion bash|zsh|fish`: generated from the command tree, run through the real CLI.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { buildProgram, main } from '../../cli/main';
import { captureMain, allCommands } from '../helpers/run-cli';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
const NAMES = allCommands(buildProgram()).slice(1).map((c) => c.name());

async function script(shell: string): Promise<string> {
  const r = await captureMain(main, ['completion', shell]);
  if (r.code !== 0) throw new Error(`completion ${shell}: status ${r.code}: ${r.stderr}`);
  return r.stdout;
}

for (const shell of SHELLS) {
  t.test(`${shell}: every command, and the options named`, async (t) => {
    const text = await script(shell);
    t.ok(NAMES.length > 10, 'the tree has its commands');
    for (const name of NAMES) t.ok(text.includes(`'${name}'`), name);
    t.ok(text.includes(`'profile build'`), 'a subcommand under its parent');
    // bash and zsh spell flags whole; fish spells them as -s/-l
    const flag = (short: string | undefined, long: string) =>
      shell === 'fish' ? new RegExp(`${short ? `-s ${short} ` : ''}-l ${long}\\b`) : new RegExp(`${short ? `'-${short}' ` : ''}'--${long}'`);
    for (const [short, long] of [['e', 'env'], ['f', 'filter'], [undefined, 'format'], [undefined, 'no-trunc'], ['u', 'user']] as const) {
      t.match(text, flag(short, long), `--${long}`);
    }
  });
}

t.test('bash -n accepts the bash script, and it completes commands and options', { skip: spawnSync('bash', ['--version']).error ? 'bash is not installed' : false }, async (t) => {
  const text = await script('bash');
  const check = spawnSync('bash', ['-n'], { input: text, encoding: 'utf8' });
  t.equal(check.status, 0, check.stderr);
  const complete = (...words: string[]) => {
    const prog = `${text}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _vmictl; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return spawnSync('bash', ['-c', prog], { encoding: 'utf8' }).stdout.trim().split('\n');
  };
  t.same(complete('vmictl', 'profile', 'b'), ['build']);
  t.same(complete('vmictl', 'ps', '--qmp', 'unix:/q', '--fi'), ['--filter']);
  t.same(complete('vmictl', 'exec', '-'), complete('vmictl', 'exec', '-').filter((w) => w.startsWith('-')));
  t.ok(complete('vmictl', 'exec', '-').includes('-e'));
  t.ok(complete('vmictl', 'co').includes('completion'));
});

t.test('an unknown shell is a usage error', async (t) => {
  const r = await captureMain(main, ['completion', 'tcsh']);
  t.equal(r.code, 2);
  t.equal(r.stdout, '');
  t.match(r.stderr, /'tcsh' is invalid for argument 'shell'\. Allowed choices are bash, zsh, fish\./);
});
