/**
 * `buildProfile` and `vmictl profile build` on a compiled fixture: DWARF types, .symtab and
 * System.map addresses, the banner from .rodata, and output that Volatility's schema accepts.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import t from 'tap';
import { registerProfile } from '../../cli/commands/profile';
import { VmiError } from '../../lib/errors';
import { buildProfile, findProfile, Profile, writeProfile } from '../../lib/kernel/profile';
import { compileFixture, runFixture, tmpDir } from '../fixtures/dwarf/fixture';

const FIXTURE_BANNER = 'Linux version 0.0.1-vmictl-fixture (fixture@localhost) (gcc) #1 SMP';
const built = compileFixture({ name: 'build', cc: 'gcc', flags: ['-gdwarf-5'] });
if (!built.ok) throw new Error(built.reason);
const binary = built.binary;
const facts = runFixture(binary);

t.test('builds types, symbols and the banner', (t) => {
  const progress: number[] = [];
  const { doc, stats } = buildProfile({ vmlinux: binary, onProgress: (done, total) => progress.push(done / total) });
  t.equal(stats.banner, FIXTURE_BANNER);
  t.equal(Buffer.from(doc.symbols.linux_banner.constant_data!, 'base64').toString('latin1'), FIXTURE_BANNER + '\n\0', 'constant_data holds the whole object, like dwarf2json');
  t.equal(progress.at(-1), 1, 'progress reaches the end of .debug_info');
  t.ok(progress.every((v, i) => i === 0 || v >= progress[i - 1]), 'progress never goes back');
  t.same(stats.dwarfVersions, [5]);
  t.ok(stats.symtabSymbols > 20);
  t.equal(stats.symbols, Object.keys(doc.symbols).length);

  for (const [name, addr] of facts.variables) t.equal(doc.symbols[name].address, addr, `&${name}`);
  t.same(doc.symbols.init_task_like.type, { kind: 'struct', name: 'task_like' }, 'DWARF type kept');
  t.same(doc.symbols.main.type, { kind: 'base', name: 'void' }, 'a symtab-only symbol is typed void, like dwarf2json');
  t.equal(doc.base_types.pointer.size, 8);
  t.equal(doc.base_types.void.kind, 'void');
  t.equal(doc.user_types.task_like.size, facts.sizes.get('struct task_like'));

  // Volatility validates ISF against schema-6.2.0 (additionalProperties: false at every level).
  t.same(Object.keys(doc).sort(), ['base_types', 'enums', 'metadata', 'symbols', 'user_types']);
  t.same(Object.keys(doc.metadata).sort(), ['format', 'linux', 'producer']);
  t.same(Object.keys(doc.metadata.linux!).sort(), ['symbols', 'types']);
  t.same(doc.metadata.linux!.symbols!.map((s) => s.kind), ['dwarf', 'symtab']);
  t.match(doc.metadata.linux!.types![0], { kind: 'dwarf', name: path.basename(binary), hash_type: 'sha256', hash_value: /^[0-9a-f]{64}$/ });
  for (const s of Object.values(doc.symbols)) {
    for (const k of Object.keys(s)) if (!['address', 'type', 'constant_data'].includes(k)) t.fail(`symbol key ${k}`);
  }
  t.end();
});

t.test('System.map addresses override the symbol table', (t) => {
  const map = path.join(tmpDir(), 'System.map');
  fs.writeFileSync(map, 'ffffffff81000000 T _text\n0000000000001234 D global_counter\n');
  const { doc, stats } = buildProfile({ vmlinux: binary, systemMap: map, noHash: true });
  t.equal(doc.symbols.global_counter.address, 0x1234n);
  t.same(doc.symbols.global_counter.type, { kind: 'base', name: 'int' }, 'the DWARF type stays');
  t.equal(doc.symbols._text.address, 0xffffffff81000000n);
  t.equal(stats.systemMapSymbols, 2);
  t.same(doc.metadata.linux!.symbols!.map((s) => s.kind), ['dwarf', 'symtab', 'system-map']);
  t.notOk('hash_value' in doc.metadata.linux!.symbols![0], 'noHash leaves hashes out');
  t.end();
});

t.test('written profiles load back and are found by banner', (t) => {
  const dir = path.join(tmpDir(), 'profiles');
  fs.mkdirSync(dir, { recursive: true });
  const { doc } = buildProfile({ vmlinux: binary, noHash: true });
  writeProfile(doc, path.join(dir, 'fixture.json.gz'));
  const p = findProfile(FIXTURE_BANNER + '\n', [dir]);
  t.equal(p.banner, FIXTURE_BANNER);
  t.equal(p.symbol('init_task_like'), facts.variables.get('init_task_like'));
  t.equal(p.fieldOffset('task_like', 'tgid'), facts.fields.find((f) => f.type === 'struct task_like' && f.path === 'tgid')!.offset);
  t.end();
});

t.test('a file without DWARF is refused', (t) => {
  const out = path.join(tmpDir(), 'nodebug');
  const r = spawnSync('gcc', ['-O0', '-x', 'c', '-', '-o', out], { input: 'int main(void){return 0;}\n' });
  t.equal(r.status, 0);
  t.throws(() => buildProfile({ vmlinux: out }), { code: 'ENODWARF' });
  t.throws(() => buildProfile({ vmlinux: path.join(tmpDir(), 'missing') }));
  t.end();
});

async function runCli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const program = new Command('vmictl').exitOverride();
  registerProfile(program);
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((stdout += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
  return { stdout, stderr };
}

t.test('vmictl profile build / info', async (t) => {
  const out = path.join(tmpDir(), 'cli.json');
  const r = await runCli(['profile', 'build', '--vmlinux', binary, '-o', out]);
  t.match(r.stdout, /^wrote .*cli\.json \(\d+ MiB\): \d+ structs\/unions, \d+ enums, \d+ base types, \d+ symbols \(\d+ from \.symtab, \d+ DWARF variables\) from 1 units \(DWARF 5, \d+ MiB\) in [\d.]+ s, peak RSS \d+ MiB\n$/);
  t.match(r.stderr, `banner: ${FIXTURE_BANNER}`);
  t.notMatch(r.stderr, /\r/, 'no progress bar when stderr is not a TTY');
  const p = Profile.load(out);
  t.equal(p.banner, FIXTURE_BANNER);

  const info = await runCli(['profile', 'info', out, '--json']);
  t.match(JSON.parse(info.stdout), { banner: FIXTURE_BANNER, format: '6.2.0', producer: { name: 'vmictl' } });
  const layout = await runCli(['profile', 'info', out, '--type', 'list_head']);
  t.equal(layout.stdout, 'struct list_head (size 16)\n       0      8  next: struct list_head *\n       8      8  prev: struct list_head *\n');

  await t.rejects(runCli(['profile', 'build', '--vmlinux', path.join(tmpDir(), 'nope'), '-o', out]), VmiError);
});
