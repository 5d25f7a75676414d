/**
 * The ELF .symtab reader, checked against the addresses the fixture program prints and against nm.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ElfFile } from '../../lib/kernel/dwarf';
import { readSymtab, parseSystemMap, STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_OBJECT } from '../../lib/kernel/symbols';
import { compileFixture, runFixture } from '../fixtures/dwarf/fixture';

const built = compileFixture({ name: 'symtab', cc: 'gcc', flags: ['-gdwarf-5'] });
if (!built.ok) throw new Error(built.reason);
const facts = runFixture(built.binary);

t.test('symbols of the fixture binary', (t) => {
  const elf = ElfFile.open(built.binary);
  t.teardown(() => elf.close());
  const syms = readSymtab(elf);
  for (const [name, addr] of facts.variables) t.equal(syms.get(name)?.address, addr, `&${name}`);
  const init = syms.get('init_task_like')!;
  t.equal(init.type, STT_OBJECT);
  t.equal(init.bind, STB_GLOBAL);
  t.equal(init.size, BigInt(facts.sizes.get('struct task_like')!), 'st_size is the object size');
  t.equal(syms.get('static_list')?.bind, STB_LOCAL, 'static variables are local symbols');
  t.equal(syms.get('main')?.type, STT_FUNC);
  t.notOk(syms.has(''), 'no unnamed symbols');
  t.notOk(syms.has('layout.c'), 'no file symbols');
  t.end();
});

const nm = spawnSync('nm', ['-n', built.binary], { encoding: 'utf8' });
t.test('agrees with nm', { skip: nm.status !== 0 ? 'nm (binutils) is not available' : false }, (t) => {
  // nm lists undefined symbols without an address; drop them, and names that occur twice.
  const lines = nm.stdout.split('\n').filter((l) => /^[0-9a-f]+ /.test(l));
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l.split(' ')[2], (counts.get(l.split(' ')[2]) ?? 0) + 1);
  const map = parseSystemMap(lines.filter((l) => counts.get(l.split(' ')[2]) === 1).join('\n'), 'nm');
  const elf = ElfFile.open(built.binary);
  t.teardown(() => elf.close());
  const syms = readSymtab(elf);
  t.ok(map.size > 20, `nm listed ${map.size} symbols`);
  let same = 0;
  for (const [name, s] of map) {
    if (syms.get(name)?.address === s.address) same++;
    else t.fail(`${name}: nm says 0x${s.address.toString(16)}, we say ${syms.get(name)?.address.toString(16)}`);
  }
  t.equal(same, map.size, 'every nm symbol has the same address');
  t.end();
});
