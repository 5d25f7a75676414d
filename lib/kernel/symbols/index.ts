/**
 * Kernel symbol sources used to fill a profile's `symbols`: the vmlinux's ELF symbol table and a
 * System.map file. Both give link-time addresses as bigint; KASLR slides are applied elsewhere.
 */
export { readSymtab, type ElfSymbol, STT_FUNC, STT_OBJECT, STB_GLOBAL, STB_LOCAL, STB_WEAK } from './symtab';
export { parseSystemMap, readSystemMap, type MapSymbol, MAX_SYSTEM_MAP_BYTES, MAX_SYSTEM_MAP_LINES } from './system-map';
