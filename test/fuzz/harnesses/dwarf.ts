/**
 * The DWARF reader over a hostile debug file: mutated .debug_info/.debug_abbrev/.debug_str (and
 * the DWARF 5 string-offset and address tables) from a gcc -g fixture, and mutated whole ELF
 * object files (section headers, relocations, compressed sections) read through ElfFile.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ElfFile, extractTypes, readDwarf, readDwarfSections, type DwarfSections } from '../../../lib/kernel/dwarf';
import { sourcePath, type Harness } from '../engine';

const SOURCE = sourcePath('test', 'fuzz', 'fixtures', 'dwarf-small.c');
const SECTION_KEYS: Array<keyof DwarfSections> = ['info', 'abbrev', 'str', 'lineStr', 'strOffsets', 'addr', 'types'];

let built: Map<string, Buffer> | undefined;

/** The fixture compiled with several DWARF flavours (objects and linked), by flavour name. */
function fixtures(): Map<string, Buffer> {
  if (built) return built;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-fuzz-dwarf-'));
  built = new Map();
  try {
    for (const [name, flags] of [
      ['dwarf4.o', ['-c', '-gdwarf-4']],
      ['dwarf5.o', ['-c', '-gdwarf-5']],
      ['dwarf5-gz.o', ['-c', '-gdwarf-5', '-gz=zlib']],
      ['dwarf4-types.o', ['-c', '-gdwarf-4', '-fdebug-types-section']],
      ['dwarf5-exe', ['-gdwarf-5', '-no-pie']],
    ] as const) {
      const out = path.join(dir, name);
      const r = spawnSync('gcc', ['-O0', '-fno-eliminate-unused-debug-types', ...flags, SOURCE, '-o', out], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gcc ${flags.join(' ')} failed: ${r.stderr || r.error?.message}`);
      built.set(name, fs.readFileSync(out));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return built;
}

/** Sections packed as [count u8][length u32 LE]... then the bytes, so a mutation can move boundaries. */
export function packSections(s: DwarfSections): Buffer {
  const parts = SECTION_KEYS.map((k) => s[k]);
  const head = Buffer.alloc(1 + 4 * parts.length);
  head[0] = parts.length;
  parts.forEach((p, i) => head.writeUInt32LE(p.length, 1 + 4 * i));
  return Buffer.concat([head, ...parts]);
}

export function unpackSections(input: Buffer): DwarfSections {
  const out = {} as DwarfSections;
  let at = 1 + 4 * SECTION_KEYS.length;
  SECTION_KEYS.forEach((k, i) => {
    const want = 2 + 4 * i <= input.length - 3 ? input.readUInt32LE(1 + 4 * i) : 0;
    const len = Math.min(want, Math.max(0, input.length - at));
    out[k] = input.subarray(at, at + len);
    at += len;
  });
  return out;
}

const DICT = [[0x13], [0x0d], [0x0b], [0x49], [0x38], [0x01, 0x11], [0x0f], [0x13, 0x01], [0x0e], [0x1f], [0x25], [0x1a], [0x00, 0x00],
  [0xff, 0xff, 0xff, 0xff], [0x05, 0x00], [0x04, 0x00], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]].map((b) => Buffer.from(b));

export const dwarfSections: Harness = {
  name: 'dwarf-sections',
  maxLength: 1 << 16,
  seeds() {
    const out: Buffer[] = [];
    for (const [name, bytes] of fixtures()) {
      if (name.endsWith('-gz.o')) continue;
      const elf = ElfFile.fromBuffer(bytes, name);
      out.push(packSections(readDwarfSections(elf)));
    }
    return out;
  },
  dictionary: DICT,
  run(input) {
    extractTypes(unpackSections(input));
  },
};

export const dwarfElf: Harness = {
  name: 'dwarf-elf',
  maxLength: 1 << 17,
  seeds: () => [...fixtures().values()],
  dictionary: [...DICT, Buffer.from('.debug_info\0'), Buffer.from('.zdebug_info\0'), Buffer.from('ZLIB'), Buffer.from('\x7fELF\x02\x01\x01', 'latin1')],
  run(input) {
    const elf = ElfFile.fromBuffer(input, 'fuzz');
    try {
      readDwarf(elf);
    } finally {
      elf.close();
    }
  },
};
