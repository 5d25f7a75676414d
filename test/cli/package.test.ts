// What `npm pack` ships, and that the tarball installs into a working `vmictl`. The pack runs in a
// copy of the project's files (what git tracks or would add), because prepack rebuilds dist/ with
// tsc, and the worktree's dist/ may be in use by tests that run the built CLI at the same time.
import { execFile, execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const BIG = { maxBuffer: 64 * 2 ** 20 };

interface PackReport {
  filename: string;
  files: Array<{ path: string }>;
}

/** Why these tests cannot run (npm or git is not there), or false. */
function toolMissing(): string | false {
  for (const tool of ['npm', 'git']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch (err) {
      return `${tool} cannot run here: ${(err as Error).message}`;
    }
  }
  return false;
}

const skip = toolMissing();

/** The project's files in `dir`/src, with the worktree's dependencies linked in for tsc. */
async function copyProject(dir: string): Promise<string> {
  const src = join(dir, 'src');
  const { stdout } = await run('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, ...BIG });
  const files = stdout.split('\0').filter((f) => f && f !== 'node_modules' && !f.startsWith('node_modules/'));
  for (const f of files) {
    await mkdir(dirname(join(src, f)), { recursive: true });
    await cp(join(ROOT, f), join(src, f), { verbatimSymlinks: true });
  }
  await symlink(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  return src;
}

let packed: Promise<{ dir: string; report: PackReport }> | undefined;

/** One real `npm pack` (prepack included) for both tests. */
function pack(): Promise<{ dir: string; report: PackReport }> {
  packed ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmictl-pack-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const src = await copyProject(dir);
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: src, ...BIG });
    return { dir, report: (JSON.parse(stdout) as PackReport[])[0]! };
  })();
  return packed;
}

t.test('the tarball holds the program, the library, the man page, the docs, and no sources or tests', { skip }, async (t) => {
  const paths = (await pack()).report.files.map((f) => f.path);
  for (const p of ['bin/vmictl', 'dist/cli/main.js', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/man/vmictl.1', 'README.md', 'LICENSE', 'CHANGELOG.md', 'package.json']) {
    t.ok(paths.includes(p), p);
  }
  t.same(paths.filter((p) => /^(test|test-vms|dist\/test|dist\/test-vms|dist\/bench|bench|profiles)\//.test(p)), [], 'no tests, test VMs, benchmarks or profiles');
  t.same(paths.filter((p) => /\.ts$/.test(p) && !/\.d\.ts$/.test(p)), [], 'no TypeScript sources');
  t.same(paths.filter((p) => p.startsWith('node_modules/')), [], 'no node_modules');
});

t.test('the packed tarball installs, and its vmictl runs', { skip }, async (t) => {
  const { dir, report } = await pack();
  const prefix = join(dir, 'prefix');
  const install = (mode: string) => run('npm', ['install', '-g', '--prefix', prefix, join(dir, report.filename), mode, '--no-audit', '--no-fund'], { cwd: dir, ...BIG });
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
  // npm links the "man" field's pages into the prefix's man directory
  const page = await readFile(join(prefix, 'share', 'man', 'man1', 'vmictl.1'), 'utf8');
  t.equal(page, (await run(vmictl, ['man'])).stdout, 'the man page installed is the one the program prints');
  t.match(page, new RegExp(`^\\.TH VMICTL 1 "" "vmictl ${version.replace(/\./g, '\\.')}"`), 'of this version');
});
