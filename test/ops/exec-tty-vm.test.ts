/**
 * `vmictl exec -it` and `-i` against the real test VM. -it runs through a pseudo-terminal on the
 * host (test/helpers/pty-run.py, as a user's terminal): what is typed reaches the shell, the
 * shell is on a /dev/pts/N of the container as its controlling terminal (its fd 0 and session,
 * looked at from inside the guest while it runs), it sees the host terminal's size and a resize,
 * and vmictl exits with the shell's status. -i relays a pipe. Afterwards nothing in the container
 * holds a terminal and ticker, the process the command was forked from, counts on.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';
import { tickerCounts } from '../helpers/kill-mid-injection';

const MAIN = join(__dirname, '..', '..', 'cli', 'main.ts');
const PTY_RUN = join(__dirname, '..', 'helpers', 'pty-run.py');
/** How long one step of a shell session may take (a slow TCG guest): a bound, not an assertion. */
const STEP_MS = 120_000;

function vmictlArgs(args: string[]): string[] {
  return [...process.execArgv.filter((a) => a.includes('typescript')), MAIN, ...args];
}

function vmEnv(env: VmEnv): NodeJS.ProcessEnv {
  return { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb };
}

/** vmictl on a host pseudo-terminal of `rows` x `cols`: lines are typed into it, its output is watched. */
function onTerminal(t: Test, env: VmEnv, rows: number, cols: number, args: string[]) {
  const child = spawn('python3', [PTY_RUN, String(rows), String(cols), process.execPath, ...vmictlArgs(args)], { stdio: ['pipe', 'pipe', 'inherit'], env: vmEnv(env) });
  let output = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString('utf8');
    for (const w of waiters) w();
  });
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // a failed step leaves no shell behind (the terminal's hangup ends vmictl's command)
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGTERM'); });
  return {
    type(line: string): void {
      child.stdin.write(`${line}\n`);
    },
    /** The first match of `re` in the output after `from` (rejects if none comes within a step). */
    until(re: RegExp, from = 0): Promise<RegExpExecArray> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(output.slice(from));
          if (!m) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no ${re} in the terminal's output: ${JSON.stringify(output)}`)); }, STEP_MS);
        waiters.add(check);
        check();
      });
    },
    get length(): number {
      return output.length;
    },
    async exit(): Promise<number | null> {
      child.stdin.end();
      return done;
    },
  };
}

/** Processes of ticker's pid namespace whose fd 0 is a terminal: "pid (comm) link sid=N" each. */
async function onTerminals(env: VmEnv): Promise<string[]> {
  // one ls for every process (a slow guest would take long to fork a readlink for each)
  const r = await guestRun(env, [
    'init=$(runc state ticker | sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\'); ns=$(readlink /proc/$init/ns/pid);',
    'ls -l /proc/[0-9]*/fd/0 2>/dev/null | sed -n \'s|.*/proc/\\([0-9]*\\)/fd/0 -> \\(.*\\(pts\\|ptmx\\).*\\)|\\1 \\2|p\' | while read -r p l; do',
    '[ "$(readlink /proc/$p/ns/pid)" = "$ns" ] || continue; set -- $p $l $(cat /proc/$p/stat); echo "$1 $4 $2 sid=$8"; done',
  ].join(' '), STEP_MS);
  return r.output.split('\n').map((l) => l.trim()).filter(Boolean);
}

t.test('vmictl exec -it and -i in ticker', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');

  const term = onTerminal(t, env, 40, 120, ['exec', '-it', 'ticker', 'sh']);
  term.type('tty; echo $((6*7)); stty size');
  const first = await term.until(/(\/dev\/pts\/(\d+))\r*\n42\r*\n(\d+) (\d+)\r*\n/);
  t.equal(`${first[3]} ${first[4]}`, '40 120', 'stty size in the container shows the host terminal\'s size');
  const shells = await onTerminals(env);
  t.equal(shells.length, 1, 'one process of the container is on a terminal while the shell runs');
  const [pid, comm, link, sid] = (shells[0] ?? '').split(' ');
  t.equal(comm, '(sh)', 'it is the shell');
  t.equal(link, first[1], `the shell's fd 0 is ${first[1]}, the terminal tty names`);
  t.equal(sid, `sid=${pid}`, 'the shell leads a session of its own');

  term.type('#resize 33 101');
  // vmictl hears of the resize by SIGWINCH, so a command typed at once may still see the old size
  let seen = '';
  for (let i = 0; i < 5 && seen !== '33 101'; i++) {
    const before = term.length;
    term.type(`stty size; echo size-${i}`);
    seen = (await term.until(new RegExp(`\\n(\\d+ \\d+)\\r*\\nsize-${i}\\r*\\n`), before))[1];
  }
  t.equal(seen, '33 101', 'a resize of the host terminal reaches the shell');
  term.type('exit 3');
  t.equal(await term.exit(), 3, 'vmictl exits with the shell\'s status');
  t.same(await onTerminals(env), [], 'nothing in the container is left on a terminal');

  const piped = spawn(process.execPath, vmictlArgs(['exec', '-i', 'ticker', 'sh']), { stdio: ['pipe', 'pipe', 'inherit'], env: vmEnv(env) });
  let out = '';
  piped.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  piped.stdin.end('echo hi\nexit 4\n');
  t.equal(await new Promise((resolve) => piped.on('exit', resolve)), 4, 'exec -i: the exit status of the script on stdin');
  t.equal(out, 'hi\n', 'exec -i: the script on stdin ran');

  const notTty = spawn(process.execPath, vmictlArgs(['exec', '-it', 'ticker', 'sh']), { stdio: ['pipe', 'ignore', 'pipe'], env: vmEnv(env) });
  let err = '';
  notTty.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  notTty.stdin.end();
  t.equal(await new Promise((resolve) => notTty.on('exit', resolve)), 125, 'exec -it without a terminal: the usage status');
  t.match(err, /the input device is not a TTY/);

  const [a, b] = await tickerCounts(env);
  t.ok(b > a, `ticker, the process the commands were forked from, counts on (${a} -> ${b})`);
});
