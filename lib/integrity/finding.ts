/** One difference found between the guest kernel and what it should be. */
export type FindingKind = 'syscall-table' | 'inline-hook' | 'text' | 'idt' | 'hidden-process' | 'hidden-module' | 'baseline' | 'ftrace-ops' | 'kprobe' | 'container-escape';

export interface Finding {
  kind: FindingKind;
  /** Run-time address of the changed bytes, pointer or object. */
  address: bigint;
  /** The symbol it belongs to (`__x64_sys_kill+0x0`, `sys_call_table[62]`), or the object's name. */
  symbol: string;
  /** Expected and found bytes (hex) or pointers, or a description for objects. */
  expected: string;
  found: string;
  /** What a changed branch now points at, when it can be told. */
  detail?: string;
}

export function findingToJson(f: Finding): Record<string, string> {
  const o: Record<string, string> = { kind: f.kind, address: `0x${f.address.toString(16)}`, symbol: f.symbol, expected: f.expected, found: f.found };
  if (f.detail) o.detail = f.detail;
  return o;
}
