/**
 * Where the kernel legitimately rewrites its own text at boot (and later, for jump labels, static
 * calls and ftrace), read from the vmlinux's own tables, each with the forms that site may take.
 * A changed byte is explained only when the whole site it is in holds one of those forms.
 *
 * Tables (Linux 6.1 layouts; all offsets are relative to the field's own address):
 *   .altinstructions   struct alt_instr { s32 instr_offset, repl_offset; u16 cpuid; u8 instrlen, replacementlen; }
 *   __jump_table       struct jump_entry { s32 code, target; long key; }
 *   .static_call_sites struct static_call_site { s32 addr, key; }  (+ the __SCT__ trampolines); a site
 *                      may also call a listed module's function when its key's `func` holds it
 *   __mcount_loc       unsigned long ip[]  (ftrace: `call __fentry__` becomes a 5-byte NOP)
 *   .parainstructions  struct paravirt_patch_site { u8 *instr; u8 type, len; }
 *   .retpoline_sites   s32[] (calls/jumps to __x86_indirect_thunk_*)
 *   .return_sites      s32[] (jumps to __x86_return_thunk)
 *   .smp_locks         s32[] (LOCK prefixes, 3e on a uniprocessor)
 *
 * Alternatives with relocations are not recomputed exactly: the accepted form is the replacement
 * with its PC-relative fields moved to the site (what apply_alternatives does for its first CALL
 * or JMP, and a superset of it), a JMP possibly shortened to 2 bytes, then NOP padding.
 */
import type { KernelImage } from './image';
import { indirectBranchLength, isNops, isPadding, relativeTarget } from './x86-forms';

export type PatchKind = 'alternative' | 'jump_label' | 'static_call' | 'ftrace' | 'paravirt' | 'retpoline' | 'return_thunk' | 'smp_lock';

export interface PatchSite {
  kind: PatchKind;
  /** Link-time address of the first byte. */
  address: bigint;
  length: number;
  /** For alternatives: the replacements (link-time address and length), several for ALTERNATIVE_2. */
  replacements?: Array<{ address: bigint; length: number }>;
  /** For jump labels: the link-time jump target. */
  target?: bigint;
  /** For static calls: the link-time address of the struct static_call_key it follows. */
  key?: bigint;
}

/** Reads the patch-site tables of the image; link-time addresses, sorted by address. */
export function readPatchSites(image: KernelImage): PatchSite[] {
  const sites: PatchSite[] = [];
  const range = (start: string, stop: string): { base: bigint; bytes: Buffer } | null => {
    const a = image.symbol(start), b = image.symbol(stop);
    if (!a || !b || b.address <= a.address) return null;
    return { base: a.address, bytes: image.raw(a.address, Number(b.address - a.address)) };
  };
  const rel = (base: bigint, buf: Buffer, o: number) => base + BigInt(o) + BigInt(buf.readInt32LE(o));

  const alt = range('__alt_instructions', '__alt_instructions_end');
  if (alt) {
    const byAddr = new Map<bigint, PatchSite>();
    for (let o = 0; o + 12 <= alt.bytes.length; o += 12) {
      const address = rel(alt.base, alt.bytes, o);
      const repl = rel(alt.base, alt.bytes, o + 4);
      const instrlen = alt.bytes[o + 10], repllen = alt.bytes[o + 11];
      let s = byAddr.get(address);
      if (!s) {
        s = { kind: 'alternative', address, length: instrlen, replacements: [] };
        byAddr.set(address, s);
        sites.push(s);
      }
      s.length = Math.max(s.length, instrlen);
      s.replacements!.push({ address: repl, length: repllen });
    }
  }
  const jt = range('__start___jump_table', '__stop___jump_table');
  if (jt) {
    for (let o = 0; o + 16 <= jt.bytes.length; o += 16) {
      const address = rel(jt.base, jt.bytes, o);
      const target = rel(jt.base, jt.bytes, o + 4);
      const first = image.raw(address, 2);
      const length = first[0] === 0xeb || (first[0] === 0x66 && first[1] === 0x90) ? 2 : 5;
      sites.push({ kind: 'jump_label', address, length, target });
    }
  }
  const sc = range('__start_static_call_sites', '__stop_static_call_sites');
  // the key's low two bits are flags (STATIC_CALL_SITE_TAIL, STATIC_CALL_SITE_INIT)
  if (sc) for (let o = 0; o + 8 <= sc.bytes.length; o += 8) sites.push({ kind: 'static_call', address: rel(sc.base, sc.bytes, o), length: 5, key: rel(sc.base, sc.bytes, o + 4) & ~3n });
  // the trampolines (`jmp func` or `ret`) that calls not yet patched go through; __SCT__x's key is __SCK__x
  for (const f of image.functions()) if (f.name.startsWith('__SCT__')) sites.push({ kind: 'static_call', address: f.address, length: 5, key: image.symbol(`__SCK__${f.name.slice(7)}`)?.address });
  const mc = range('__start_mcount_loc', '__stop_mcount_loc');
  if (mc) for (let o = 0; o + 8 <= mc.bytes.length; o += 8) sites.push({ kind: 'ftrace', address: mc.bytes.readBigUInt64LE(o), length: 5 });
  const pv = range('__parainstructions', '__parainstructions_end');
  if (pv) for (let o = 0; o + 16 <= pv.bytes.length; o += 16) sites.push({ kind: 'paravirt', address: pv.bytes.readBigUInt64LE(o), length: pv.bytes[o + 9] });
  const rp = range('__retpoline_sites', '__retpoline_sites_end');
  if (rp) {
    for (let o = 0; o + 4 <= rp.bytes.length; o += 4) {
      const address = rel(rp.base, rp.bytes, o);
      const first = image.raw(address, 1)[0];
      sites.push({ kind: 'retpoline', address, length: first === 0x0f ? 6 : 5 });
    }
  }
  const rs = range('__return_sites', '__return_sites_end');
  if (rs) for (let o = 0; o + 4 <= rs.bytes.length; o += 4) sites.push({ kind: 'return_thunk', address: rel(rs.base, rs.bytes, o), length: 5 });
  const sl = range('__smp_locks', '__smp_locks_end');
  if (sl) for (let o = 0; o + 4 <= sl.bytes.length; o += 4) sites.push({ kind: 'smp_lock', address: rel(sl.base, sl.bytes, o), length: 1 });
  // ftrace's own trampoline has call sites it retargets (ftrace_update_ftrace_func)
  for (const name of ['ftrace_call', 'ftrace_regs_call', 'ftrace_graph_call']) {
    const s = image.symbol(name);
    if (s) sites.push({ kind: 'ftrace', address: s.address, length: 5 });
  }
  sites.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return sites;
}

export interface SiteContext {
  image: KernelImage;
  /** The site's bytes as the vmlinux has them, relocated. */
  original: Buffer;
  slide: bigint;
  /**
   * Static calls the kernel pointed into module text (static_call_update() to a module's
   * function, as KVM does with perf's guest callbacks): the key's link-time address to the
   * run-time function its `func` holds, for keys whose function lies in a listed module.
   */
  moduleStaticCalls?: ReadonlyMap<bigint, bigint>;
}

const XOR_EAX_EAX = Buffer.from([0x2e, 0x2e, 0x2e, 0x31, 0xc0]);

/**
 * Whether `found` equals `form` except where both hold NOP runs of the same extent (optimize_nops
 * re-encodes the padding of a site with the longest NOPs it has).
 */
function equalModuloNops(form: Buffer, found: Buffer): boolean {
  if (form.length !== found.length) return false;
  let i = 0;
  while (i < form.length && form[i] === found[i]) i++;
  if (i === form.length) return true;
  let j = form.length;
  while (j > i && form[j - 1] === found[j - 1]) j--;
  for (let a = i; a >= Math.max(0, i - 8); a--) {
    for (let b = j; b <= Math.min(form.length, j + 16); b++) {
      if (isNops(form.subarray(a, b)) && isNops(found.subarray(a, b))) return true;
    }
  }
  return false;
}

const RETURN_THUNK = /return_thunk$|^__x86_return_|^its_return_thunk$|^retbleed_return_thunk$|^srso_/;

/** Whether the call/jmp in `found` goes to the entry of a vmlinux code symbol (optionally matching). */
function branchesToFunction(found: Buffer, site: PatchSite, image: KernelImage, ops: Array<'call' | 'jmp'>, name?: RegExp): boolean {
  const r = relativeTarget(found, site.address);
  if (!r || !ops.includes(r.op) || !isPadding(found.subarray(r.length))) return false;
  const f = image.functionAt(r.target);
  return f !== undefined && (name === undefined || name.test(f.name));
}

/** A static call site that calls or jumps to the module function its own key holds. */
function branchesToModuleCall(found: Buffer, site: PatchSite, ctx: SiteContext): boolean {
  if (site.key === undefined || !ctx.moduleStaticCalls) return false;
  const func = ctx.moduleStaticCalls.get(site.key);
  // decoded at the site's run-time address: a module function does not move with the kernel's slide
  const r = relativeTarget(found, site.address + ctx.slide);
  return func !== undefined && r !== null && r.target === func && isPadding(found.subarray(r.length));
}

/** The replacement of an alternative as apply_alternatives would write it at the site. */
function alternativeForm(image: KernelImage, site: PatchSite, repl: { address: bigint; length: number }, slide: bigint): Buffer | undefined {
  const bytes = image.expected(repl.address, repl.length, slide);
  if (!bytes) return undefined;
  const delta = repl.address - site.address;
  for (const r of image.relocationsIn(repl.address, repl.length)) {
    if (r.slideSign !== 0 || r.width !== 4 || (r.type !== 2 && r.type !== 4)) continue;
    const target = r.target;
    // a PC-relative field pointing outside the replacement moves with the code
    if (target >= repl.address && target < repl.address + BigInt(repl.length)) continue;
    const at = Number(r.place - repl.address);
    bytes.writeInt32LE(Number(BigInt.asIntN(32, BigInt(bytes.readInt32LE(at)) + delta)), at);
  }
  return bytes;
}

/** Whether `found` (the site's current bytes) is a form this site may legitimately take. */
export function acceptsForm(site: PatchSite, found: Buffer, ctx: SiteContext): boolean {
  if (found.equals(ctx.original)) return true;
  const { image } = ctx;
  switch (site.kind) {
    case 'smp_lock':
      return found[0] === 0xf0 || found[0] === 0x3e;
    case 'jump_label': {
      if (isNops(found)) return true;
      const r = relativeTarget(found, site.address);
      return r !== null && r.op === 'jmp' && r.target === site.target && r.length === found.length;
    }
    case 'ftrace':
      return isNops(found) || branchesToFunction(found, site, image, ['call'], /^(ftrace_caller|ftrace_regs_caller|ftrace_stub|ftrace_graph_caller|ftrace_epilogue|ftrace_stub_graph)$/) ||
        branchesToFunction(found, site, image, ['call', 'jmp'], /^(ftrace_stub|ftrace_graph_caller|ftrace_stub_graph|ftrace_epilogue|ftrace_ops_no_ops|ftrace_ops_list_func|arch_ftrace_ops_list_func)$/);
    case 'static_call':
      if (isNops(found)) return true;
      // __static_call_return0 inlined as `xor %eax,%eax` behind CS prefixes (static_call_transform)
      if (found.equals(XOR_EAX_EAX)) return true;
      if (found[0] === 0xc3 && isPadding(found.subarray(1))) return true;
      return branchesToFunction(found, site, image, ['call', 'jmp']) || branchesToModuleCall(found, site, ctx);
    case 'paravirt':
      if (isNops(found)) return true;
      if (found[0] === 0x0f && found[1] === 0x0b) return true; // ud2 for a NULL op
      return branchesToFunction(found, site, image, ['call']);
    case 'retpoline': {
      const n = indirectBranchLength(found);
      if (n > 0 && isPadding(found.subarray(n))) return true;
      return branchesToFunction(found, site, image, ['call', 'jmp'], /^__x86_indirect_/);
    }
    case 'return_thunk':
      if (found[0] === 0xc3 && isPadding(found.subarray(1))) return true;
      return branchesToFunction(found, site, image, ['jmp'], RETURN_THUNK);
    case 'alternative': {
      if (isNops(found) || equalModuloNops(ctx.original, found)) return true;
      for (const repl of site.replacements ?? []) {
        const form = alternativeForm(image, site, repl, ctx.slide);
        if (!form || form.length > found.length) continue;
        if (found.subarray(0, form.length).equals(form) && isPadding(found.subarray(form.length))) return true;
        if (equalModuloNops(Buffer.concat([form, Buffer.alloc(found.length - form.length, 0x90)]), found)) return true;
        // recompute_jump: a JMP replacement may be re-encoded short or long to the same target
        const want = relativeTarget(form, site.address);
        const got = relativeTarget(found, site.address);
        if (want && got && want.op === got.op && want.target === got.target && form.length === want.length && isPadding(found.subarray(got.length))) return true;
      }
      return false;
    }
  }
}
