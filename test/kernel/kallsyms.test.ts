/**
 * kallsyms decoding on synthetic .rodata built here the way scripts/kallsyms.c lays it out: a small
 * symbol set compressed with a token table, in the 6.1 order (offsets and relative base first) and
 * the 6.4+ order (after the token index), with and without kallsyms_seqs_of_names, with "big" (2-byte length) names and per-CPU symbols;
 * and the 7.x one: 4-byte labels, place-relative offsets with no relative base, seqs_of_names last.
 */
import t from 'tap';
import { decodeKallsyms, LINK_TEXT, tokenIndexCandidates } from '../../lib/kernel/kallsyms/tables';

type Layout = '6.1' | '6.1-stable' | '6.4';
interface Sym { name: string; type: string; address: bigint }

const align8 = (b: number[]): void => { while (b.length % 8) b.push(0); };
const align4 = (b: number[]): void => { while (b.length % 4) b.push(0); };
const u32 = (b: number[], v: number): void => { const x = Buffer.alloc(4); x.writeUInt32LE(v >>> 0); b.push(...x); };
const s32 = (b: number[], v: number): void => { const x = Buffer.alloc(4); x.writeInt32LE(v); b.push(...x); };
const u64 = (b: number[], v: bigint): void => { const x = Buffer.alloc(8); x.writeBigUInt64LE(v); b.push(...x); };

/** Tokens: every byte value stands for itself except a few that stand for common substrings. */
function tokenTable(): string[] {
  const tokens: string[] = [];
  for (let i = 0; i < 256; i++) tokens.push(String.fromCharCode(i === 0 ? 0x80 : i));
  tokens[1] = 'init_';
  tokens[2] = 'task';
  tokens[3] = '_struct';
  tokens[4] = 'Tsys_';
  return tokens;
}

function compress(text: string, tokens: string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length;) {
    let best = text.charCodeAt(i);
    let len = 1;
    for (let k = 1; k <= 4; k++) {
      if (tokens[k].length > len && text.startsWith(tokens[k], i)) { best = k; len = tokens[k].length; }
    }
    out.push(best);
    i += len;
  }
  return out;
}

function names(b: number[], syms: Sym[], tokens: string[]): number[] {
  const namesAt = b.length;
  const markers: number[] = [];
  syms.forEach((s, i) => {
    if (i % 256 === 0) markers.push(b.length - namesAt);
    const c = compress(s.type + s.name, tokens);
    if (c.length > 127) b.push(0x80 | (c.length & 0x7f), c.length >> 7);
    else b.push(c.length);
    b.push(...c);
  });
  return markers;
}

function seqsOfNames(b: number[], syms: Sym[]): void {
  // the symbols' indices in name order, 3 bytes each, big-endian
  const order = syms.map((s, i) => [s.name, i] as const).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
  for (const [, i] of order) b.push((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
}

/**
 * The 7.x layout (Debian's 7.2 cloud kernel): labels 4-byte aligned; kallsyms_offsets after the
 * token index, each s32 counting from its own slot (no kallsyms_relative_base); then the seqs.
 * `imageAt` is the virtual address the bytes are placed at.
 */
function encode7(syms: Sym[], imageAt: bigint): { image: Buffer; tokenIndexAt: number } {
  const tokens = tokenTable();
  const b: number[] = [0xaa, 0xbb, 0xcc, 0xdd, 0x11, 0x22, 0x33]; // unrelated bytes before
  align4(b);
  u32(b, syms.length); // no padding: names follow at once
  const markers = names(b, syms, tokens);
  align4(b);
  for (const m of markers) u32(b, m);
  const index: number[] = [];
  const tableAt = b.length;
  for (const tok of tokens) { index.push(b.length - tableAt); b.push(...Buffer.from(tok, 'latin1'), 0); }
  align4(b);
  const tokenIndexAt = b.length;
  for (const i of index) { b.push(i & 0xff, i >> 8); }
  align4(b);
  for (const s of syms) s32(b, Number(s.address - (imageAt + BigInt(b.length))));
  seqsOfNames(b, syms);
  b.push(1, 2, 3, 4, 5, 6, 7, 8);
  return { image: Buffer.from(b), tokenIndexAt };
}

function encode(syms: Sym[], layout: Layout, relativeBase: bigint, absolutePercpu = true): { image: Buffer; tokenIndexAt: number } {
  const tokens = tokenTable();
  const b: number[] = [0xaa, 0xbb, 0xcc]; // unrelated bytes before
  align8(b);
  const offsets = (out: number[]): void => {
    for (const s of syms) {
      // absolute per-CPU: small addresses as themselves, kernel ones as relative_base − 1 − offset
      if (!absolutePercpu) u32(out, Number(s.address - relativeBase));
      else if (s.address < 0x100000000n) s32(out, Number(s.address));
      else s32(out, Number(relativeBase - 1n - s.address));
    }
    align8(out);
    u64(out, relativeBase);
  };
  if (layout !== '6.4') offsets(b);
  u32(b, syms.length); align8(b);
  const namesAt = b.length;
  const markers: number[] = [];
  syms.forEach((s, i) => {
    if (i % 256 === 0) markers.push(b.length - namesAt);
    const c = compress(s.type + s.name, tokens);
    if (c.length > 127) b.push(0x80 | (c.length & 0x7f), c.length >> 7);
    else b.push(c.length);
    b.push(...c);
  });
  align8(b);
  for (const m of markers) u32(b, m);
  align8(b);
  if (layout !== '6.1') {
    // kallsyms_seqs_of_names: the symbols' indices in name order, 3 bytes each, big-endian
    const order = syms.map((s, i) => [s.name, i] as const).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]));
    for (const [, i] of order) b.push((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    align8(b);
  }
  const index: number[] = [];
  const tableAt = b.length;
  for (const tok of tokens) { index.push(b.length - tableAt); b.push(...Buffer.from(tok, 'latin1'), 0); }
  align8(b);
  const tokenIndexAt = b.length;
  for (const i of index) { b.push(i & 0xff, i >> 8); }
  align8(b);
  if (layout === '6.4') offsets(b);
  b.push(1, 2, 3, 4, 5, 6, 7, 8);
  return { image: Buffer.from(b), tokenIndexAt };
}

function symbols(): Sym[] {
  const syms: Sym[] = [
    { name: 'fixed_percpu_data', type: 'A', address: 0n },
    { name: 'cpu_number', type: 'D', address: 0x1ea40n },
  ];
  const base = 0xffffffff9a000000n;
  for (let i = 0; i < 700; i++) syms.push({ name: i === 300 ? 'x'.repeat(200) : `sym_${i}_init_task`, type: i % 3 ? 't' : 'T', address: base + BigInt(i * 16) });
  syms.push({ name: 'init_task', type: 'D', address: base + 0x100000n });
  syms.push({ name: 'sys_call_table', type: 'R', address: base + 0x200000n });
  return syms;
}

for (const layout of ['6.1', '6.1-stable', '6.4'] as const) {
  t.test(`decodes every name and address (${layout} layout)`, async (t) => {
    const syms = symbols();
    const { image, tokenIndexAt } = encode(syms, layout, 0xffffffff9a000000n);
    const found = [...tokenIndexCandidates(image)];
    t.ok(found.includes(tokenIndexAt), 'the token index is found by its shape');
    const k = decodeKallsyms(image, tokenIndexAt);
    if (!k) return t.fail('not decoded');
    t.equal(k.entries.length, syms.length, 'symbol count');
    t.same(k.entries.map((e) => e.name), syms.map((s) => s.name), 'names');
    t.same(k.entries.map((e) => e.type), syms.map((s) => s.type), 'types');
    t.same(k.entries.map((e) => e.address), syms.map((s) => s.address), 'addresses');
    t.ok(k.absolutePercpu, 'absolute per-CPU offsets recognised');
    t.equal(k.relativeBase, 0xffffffff9a000000n);
  });
}

t.test('a corrupted table is rejected, not guessed at', async (t) => {
  const syms = symbols();
  const { image, tokenIndexAt } = encode(syms, '6.1', 0xffffffff9a000000n);
  const bad = Buffer.from(image);
  // break the markers: the second marker no longer falls on entry 256
  const k = decodeKallsyms(image, tokenIndexAt)!;
  bad.writeUInt32LE(bad.readUInt32LE(k.at.markers + 4) + 1, k.at.markers + 4);
  t.equal(decodeKallsyms(bad, tokenIndexAt), null, 'bad marker');
  const trunc = image.subarray(k.at.names + 10);
  t.equal(decodeKallsyms(trunc, tokenIndexAt - k.at.names - 10), null, 'names cut short');
  t.equal(decodeKallsyms(image, tokenIndexAt - 8), null, 'not at the token index');
});

t.test('decodes the 7.x layout: 4-byte labels, place-relative offsets, no relative base', async (t) => {
  // runtime addresses, slid by KASLR; the decoded ones are link-time, _text at LINK_TEXT
  const text = 0xffffffffa3200000n;
  const syms: Sym[] = [{ name: '_text', type: 'T', address: text }];
  for (let i = 0; i < 700; i++) syms.push({ name: i === 300 ? 'y'.repeat(150) : `sym_${i}_init_task`, type: i % 3 ? 't' : 'T', address: text + 0x1000n + BigInt(i * 16) });
  // per-CPU symbols are ordinary kernel addresses here
  syms.push({ name: 'cpu_number', type: 'D', address: text + 0x2dbd034n });
  syms.push({ name: 'init_task', type: 'D', address: text + 0x3000000n });
  // place the bytes so that no label falls on an 8-byte boundary by chance alone
  for (const imageAt of [text + 0x1800000n, text + 0x1800004n]) {
    const { image, tokenIndexAt } = encode7(syms, imageAt);
    t.ok([...tokenIndexCandidates(image)].includes(tokenIndexAt), 'the token index is found by its shape');
    const k = decodeKallsyms(image, tokenIndexAt);
    if (!k) { t.fail('not decoded'); continue; }
    t.same(k.entries.map((e) => e.name), syms.map((s) => s.name), 'names');
    t.same(k.entries.map((e) => e.type), syms.map((s) => s.type), 'types');
    t.same(k.entries.map((e) => e.address), syms.map((s) => s.address - text + LINK_TEXT), 'link-time addresses');
    t.equal(k.runtimeAddresses, false, 'marked link-time');
    t.equal(k.relativeBase, null, 'no relative base');
    t.equal(k.at.offsets, tokenIndexAt + 512, 'offsets right after the token index');
  }
});

t.test('base-relative offsets with no absolute per-CPU symbols stay runtime addresses', async (t) => {
  // read as place-relative they are sorted too: the tie must go to the relative base
  const base = 0xffffffff9a000000n;
  const syms = symbols().filter((s) => s.address >= base);
  const { image, tokenIndexAt } = encode(syms, '6.4', base, false);
  const k = decodeKallsyms(image, tokenIndexAt);
  if (!k) return t.fail('not decoded');
  t.same(k.entries.map((e) => e.address), syms.map((s) => s.address), 'runtime addresses');
  t.equal(k.runtimeAddresses, true);
  t.equal(k.absolutePercpu, false);
  t.equal(k.relativeBase, base);
});
