// What `npm pack` ships, and that the tarball installs into a working `vmictl`. Both pack runs
// go through prepack, which builds dist/ with tsc.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const BIG = { maxBuffer: 64 * 2 ** 20 };

interface PackReport {
  filename: string;
  files: Array<{ path: string }>;
}

/** Why the tests cannot run (npm is not there), or false. */
function npmMissing(): string | false {
  try {
    execFileSync('npm', ['--version'], { stdio: 'ignore' });
    return false;
  } catch (err) {
    return `npm cannot run here: ${(err as Error).message}`;
  }
}

const skip = npmMissing();

t.test('the tarball holds the program, the library, the docs, and no sources or tests', { skip }, async (t) => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT, ...BIG });
  const paths = (JSON.parse(stdout) as PackReport[])[0]!.files.map((f) => f.path);
  for (const p of ['bin/vmictl', 'dist/cli/main.js', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'README.md', 'LICENSE', 'CHANGELOG.md', 'package.json']) {
    t.ok(paths.includes(p), p);
  }
  t.same(paths.filter((p) => /^(test|test-vms|dist\/test|dist\/test-vms|dist\/bench|bench|profiles)\//.test(p)), [], 'no tests, test VMs, benchmarks or profiles');
  t.same(paths.filter((p) => /\.ts$/.test(p) && !/\.d\.ts$/.test(p)), [], 'no TypeScript sources');
  t.same(paths.filter((p) => p.startsWith('node_modules/')), [], 'no node_modules');
});

t.test('the packed tarball installs, and its vmictl runs', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmictl-pack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, ...BIG });
  const tarball = join(dir, (JSON.parse(stdout) as PackReport[])[0]!.filename);
  const prefix = join(dir, 'prefix');
  const install = (mode: string) => run('npm', ['install', '-g', '--prefix', prefix, tarball, mode, '--no-audit', '--no-fund'], { cwd: dir, ...BIG });
  try {
    await install('--offline');
  } catch (err) {
    // the dependencies are not all in npm's cache: let npm fetch what is missing
    if (!/ENOTCACHED/.test(String((err as { stderr?: string }).stderr))) throw err;
    await install('--prefer-offline');
  }
  const vmictl = join(prefix, 'bin', 'vmictl');
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = await run(vmictl, ['--version']);
  t.equal(v.stdout, `${version}\n`, 'the version of package.json');
  const help = await run(vmictl, ['--help']);
  t.match(help.stdout, /^Usage: vmictl /, '--help exits 0 with the usage');
});
