/**
 * Building a profile from a debug vmlinux, like `dwarf2json linux --elf vmlinux`: types and
 * variables from DWARF, addresses from the ELF symbol table (and/or a System.map), and the
 * `linux_banner` string from .rodata as the symbol's constant data, which is what identifies the
 * kernel later.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmiError } from '../../errors';
import { ElfFile, readDwarf, type DwarfModel } from '../dwarf';
import { readSymtab, readSystemMap, type ElfSymbol, type MapSymbol } from '../symbols';
import { ISF_FORMAT, dict, type IsfBaseType, type IsfDocument, type IsfEnum, type IsfSourceInfo, type IsfSymbol, type IsfUserType } from './isf';
import { normalizeBanner } from './profile';

export interface BuildOptions {
  /** The debug vmlinux (ELF with .debug_info). */
  vmlinux: string;
  /** A System.map whose addresses override the ELF symbol table's. */
  systemMap?: string;
  /** Progress of the DWARF pass: bytes of .debug_info done, of total. */
  onProgress?: (done: number, total: number) => void;
  /** Skip hashing the input files for the metadata (saves reading them once more). */
  noHash?: boolean;
}

export interface BuildStats {
  userTypes: number;
  enums: number;
  baseTypes: number;
  symbols: number;
  dwarfVariables: number;
  symtabSymbols: number;
  systemMapSymbols: number;
  units: number;
  dwarfVersions: number[];
  infoBytes: number;
  banner?: string;
  seconds: number;
}

export interface BuildResult {
  doc: IsfDocument;
  stats: BuildStats;
}

const VOID = { kind: 'base', name: 'void' } as const;
/** The most of `linux_banner` we read when its size is unknown (System.map only). */
const MAX_BANNER = 1024;

export function producerVersion(): string {
  // Walk up from this file to vmictl's package.json (works from lib/ and from dist/lib/).
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const p = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vmictl' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // keep looking
    }
    dir = path.dirname(dir);
  }
  return '0.0.0';
}

function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function sourceInfo(file: string, kind: IsfSourceInfo['kind'], hash: string | undefined): IsfSourceInfo {
  const info: IsfSourceInfo = { kind, name: path.basename(file) };
  if (hash) {
    info.hash_type = 'sha256';
    info.hash_value = hash;
  }
  return info;
}

/** Converts the DWARF model into the ISF sections (without symbols). */
export function modelToIsf(model: DwarfModel): Pick<IsfDocument, 'base_types' | 'user_types' | 'enums'> {
  const base_types = dict<IsfBaseType>();
  for (const [name, b] of model.baseTypes) base_types[name] = { kind: b.kind, size: b.size, signed: b.signed, endian: 'little' };
  if (model.pointerSize > 0) base_types.pointer = { kind: 'int', size: model.pointerSize, signed: false, endian: 'little' };

  const user_types = dict<IsfUserType>();
  for (const [name, u] of model.userTypes) {
    const fields = dict<IsfUserType['fields'][string]>();
    for (const [fname, f] of u.fields) fields[fname] = f.anonymous ? { offset: f.offset, type: f.type, anonymous: true } : { offset: f.offset, type: f.type };
    user_types[name] = { kind: u.kind, size: u.size, fields };
  }

  // dwarf2json's choice of an enum's `base`: the first base type, by sorted name, of kind int
  // with the enum's size and signedness.
  const ints = [...model.baseTypes.entries()].filter(([, b]) => b.kind === 'int').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const enums = dict<IsfEnum>();
  for (const [name, e] of model.enums) {
    const base = ints.find(([, b]) => b.size === e.size && b.signed === e.signed)?.[0] ?? 'void';
    const constants = dict<bigint>();
    for (const [c, v] of e.constants) constants[c] = v;
    enums[name] = { size: e.size, base, constants };
  }
  return { base_types, user_types, enums };
}

/**
 * Builds the profile document of a debug vmlinux. Throws VmiError ENODWARF when the file has no
 * DWARF, and VmiError ENOSYMBOLS when neither .symtab nor a System.map gives addresses.
 */
export function buildProfile(opts: BuildOptions): BuildResult {
  const started = process.hrtime.bigint();
  const elf = ElfFile.open(opts.vmlinux);
  try {
    const model = readDwarf(elf, { onProgress: opts.onProgress });
    const { base_types, user_types, enums } = modelToIsf(model);

    const symbols = dict<IsfSymbol>();
    // DWARF variables first: they carry types. Declarations without an address get one below.
    const pending = new Map<string, IsfSymbol>();
    for (const [name, v] of model.variables) {
      const s: IsfSymbol = { address: v.address ?? 0n, type: v.type };
      if (v.address !== undefined) symbols[name] = s;
      else pending.set(name, s);
    }
    const place = (name: string, address: bigint): void => {
      const s = symbols[name] ?? pending.get(name);
      if (s) {
        s.address = address;
        symbols[name] = s;
      } else {
        symbols[name] = { address, type: { ...VOID } };
      }
    };

    const symtab: Map<string, ElfSymbol> = readSymtab(elf);
    for (const [name, s] of symtab) place(name, s.address);
    let map: Map<string, MapSymbol> | undefined;
    if (opts.systemMap) {
      map = readSystemMap(opts.systemMap);
      for (const [name, s] of map) place(name, s.address);
    }
    if (symtab.size === 0 && !map) {
      throw new VmiError('ENOSYMBOLS', `${opts.vmlinux} has no symbol table; pass --system-map`);
    }

    // linux_banner's bytes, as dwarf2json stores them (the whole object, NUL included).
    let banner: string | undefined;
    const bannerSym = symbols.linux_banner;
    if (bannerSym) {
      const size = Number(symtab.get('linux_banner')?.size ?? 0n);
      let bytes = size > 0 && size <= 64 * 1024 ? elf.readVirtual(bannerSym.address, size) : undefined;
      if (!bytes) {
        const probe = elf.readVirtual(bannerSym.address, MAX_BANNER);
        if (probe) {
          const nul = probe.indexOf(0);
          bytes = nul >= 0 ? probe.subarray(0, nul + 1) : probe;
        }
      }
      if (bytes) {
        bannerSym.constant_data = bytes.toString('base64');
        banner = normalizeBanner(bytes.toString('latin1'));
        // Since 6.1 linux_banner is defined in init/version-timestamp.c, built without debug
        // info: DWARF only has `extern const char linux_banner[]`. Give the array its length.
        const ty = bannerSym.type;
        if (ty?.kind === 'array' && ty.count === 0) bannerSym.type = { ...ty, count: bytes.length };
      }
    }

    const hash = (f: string): string | undefined => (opts.noHash ? undefined : sha256File(f));
    const vmlinuxHash = hash(opts.vmlinux);
    const symbolSources: IsfSourceInfo[] = [sourceInfo(opts.vmlinux, 'dwarf', vmlinuxHash)];
    if (symtab.size > 0) symbolSources.push(sourceInfo(opts.vmlinux, 'symtab', vmlinuxHash));
    if (opts.systemMap) symbolSources.push(sourceInfo(opts.systemMap, 'system-map', hash(opts.systemMap)));
    const doc: IsfDocument = {
      metadata: {
        format: ISF_FORMAT,
        producer: { name: 'vmictl', version: producerVersion(), datetime: new Date().toISOString() },
        linux: { symbols: symbolSources, types: [sourceInfo(opts.vmlinux, 'dwarf', vmlinuxHash)] },
      },
      base_types,
      user_types,
      enums,
      symbols,
    };
    const stats: BuildStats = {
      userTypes: model.userTypes.size,
      enums: model.enums.size,
      baseTypes: Object.keys(base_types).length,
      symbols: Object.keys(symbols).length,
      dwarfVariables: model.variables.size,
      symtabSymbols: symtab.size,
      systemMapSymbols: map?.size ?? 0,
      units: model.stats.units,
      dwarfVersions: model.stats.versions,
      infoBytes: model.stats.infoBytes,
      banner,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
    };
    return { doc, stats };
  } finally {
    elf.close();
  }
}
