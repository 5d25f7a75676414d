import t from 'tap';
import { ProtocolError } from '../../lib/errors';
import { GdbArgumentError } from '../../lib/transport/gdb/errors';
import { RegisterLayout } from '../../lib/transport/gdb/registers';
import { describeStop, isStopReply, parseStopReply } from '../../lib/transport/gdb/stop-reply';
import { layoutOf, loadTargetDescription } from '../../lib/transport/gdb/target-description';
import { tokenizeXml } from '../../lib/transport/gdb/xml';
import { DEFAULT_FILES } from '../helpers/fake-gdb';

const reader = (files: Record<string, string>) => async (annex: string) => {
  const f = files[annex];
  if (f === undefined) throw new ProtocolError(`no ${annex}`);
  return f;
};

t.test('stop replies as QEMU 7.2 sends them', async (t) => {
  const r = parseStopReply('T02thread:01;');
  t.equal(r.kind, 'T');
  t.equal(r.signal, 2);
  t.equal(r.thread, '01');
  t.notOk(r.watch);
  t.equal(describeStop(r), 'T02 (SIGINT), thread 01');

  const w = parseStopReply('T05watch:ffffffff81a00040;thread:02;');
  t.equal(w.signal, 5);
  t.same(w.watch, { kind: 'watch', address: 0xffffffff81a00040n });
  t.equal(w.thread, '02');
  t.equal(parseStopReply('T05rwatch:1000;thread:p1.2;').watch?.kind, 'rwatch');
  t.equal(parseStopReply('T05awatch:10;').watch?.address, 0x10n);
});

t.test('stop replies: other kinds and fields', async (t) => {
  const s = parseStopReply('S05');
  t.equal(s.kind, 'S');
  t.equal(s.signal, 5);
  const w = parseStopReply('W00');
  t.equal(w.kind, 'W');
  t.equal(w.exitCode, 0);
  t.equal(w.signal, undefined);
  t.equal(parseStopReply('W01;process:1a').process, '1a');
  const x = parseStopReply('X09;process:2');
  t.equal(x.signal, 9);
  t.equal(x.process, '2');
  const h = parseStopReply('T05hwbreak:;thread:01;core:3;library:;');
  t.ok(h.hwbreak);
  t.notOk(h.swbreak);
  t.equal(h.core, 3);
  t.ok(h.fields.has('library'));
  t.ok(parseStopReply('T05swbreak:;').swbreak);
  t.throws(() => parseStopReply('OK'), ProtocolError);
  t.throws(() => parseStopReply('T'), ProtocolError);
  t.throws(() => parseStopReply('T05watch:zz;'), ProtocolError);
  t.ok(isStopReply(Buffer.from('T05')));
  t.ok(isStopReply(Buffer.from('W00')));
  t.notOk(isStopReply(Buffer.from('OK')));
  t.notOk(isStopReply(Buffer.from('0123')));
});

t.test('stop replies: inline registers, named through the layout', async (t) => {
  const layout = new RegisterLayout([
    { name: 'rax', bitsize: 64 },
    { name: 'eflags', bitsize: 32 },
    { name: 'rip', bitsize: 64, regnum: 16 },
  ]);
  const r = parseStopReply('T0510:0010000081ffffff;1:46020000;0:xxxxxxxxxxxxxxxx;thread:01;', layout);
  t.equal(r.registers.get('rip'), 0xffffff8100001000n);
  t.equal(r.registers.get('eflags'), 0x246n);
  t.notOk(r.registers.has('rax'), 'unavailable (xx) register left out');
  t.same([...r.registersByNumber.keys()].sort(), [1, 16]);
  t.equal(r.thread, '01');
  const unnamed = parseStopReply('T0563:01;');
  t.equal(unnamed.registersByNumber.get(0x63)?.toString('hex'), '01');
  t.equal(unnamed.registers.size, 0);
});

t.test('xml tokenizer: comments, doctype, entities, nesting', async (t) => {
  const toks = tokenizeXml('<?xml version="1.0"?><!DOCTYPE t SYSTEM "x.dtd"><a x=\'1\' y="&lt;&amp;&#65;"><!-- <b/> --><c/>text</a>', 'doc');
  t.same(toks, [
    { type: 'open', name: 'a', attrs: { x: '1', y: '<&A' }, selfClosing: false },
    { type: 'open', name: 'c', attrs: {}, selfClosing: true },
    { type: 'text', text: 'text' },
    { type: 'close', name: 'a' },
  ]);
  t.throws(() => tokenizeXml('<a><b></a>', 'doc'), ProtocolError);
  t.throws(() => tokenizeXml('<a>', 'doc'), ProtocolError);
  t.throws(() => tokenizeXml('<a x="1></a>', 'doc'), ProtocolError);
  t.throws(() => tokenizeXml('<!-- never closed', 'doc'), ProtocolError);
  t.throws(() => tokenizeXml('<a>&bogus;</a>', 'doc'), ProtocolError);
});

t.test('target description with xi:include, comments and regnum', async (t) => {
  const desc = await loadTargetDescription(reader(DEFAULT_FILES));
  t.equal(desc.architecture, 'i386:x86-64');
  t.same(desc.files, ['target.xml', 'core.xml', 'sys.xml']);
  t.same(desc.features, ['test.core', 'test.sys']);
  t.notOk(desc.registers.some((r) => r.name === 'ghost'), 'register inside a comment ignored');
  const layout = layoutOf(desc);
  const at = (n: string) => {
    const r = layout.require(n);
    return [r.regnum, r.offset, r.size];
  };
  t.same(at('rax'), [0, 0, 8]);
  t.same(at('rip'), [2, 16, 8]);
  t.same(at('eflags'), [3, 24, 4]);
  t.same(at('cs'), [4, 28, 4]);
  t.same(at('st0'), [5, 32, 10]);
  t.same(at('fs_base'), [8, 42, 8], 'regnum="8" jumps the number, not the offset');
  t.same(at('gs_base'), [9, 50, 8]);
  t.same(at('cr3'), [10, 58, 8]);
  t.same(at('xmm0'), [11, 66, 16]);
  t.equal(layout.size, 82);
  t.equal(layout.require('fs_base').feature, 'test.sys');
  t.equal(layout.get('RIP')?.name, 'rip', 'case-insensitive lookup');
  t.throws(() => layout.require('nope'), GdbArgumentError);
});

t.test('target description: QEMU x86-64 order (segment bases and control registers before x87)', async (t) => {
  // The order of QEMU 7.2's i386-64bit.xml, abridged to the register lines (sizes as there).
  const names: [string, number][] = [
    ...['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'].map((n) => [n, 64] as [string, number]),
    ['rip', 64], ['eflags', 32],
    ...['cs', 'ss', 'ds', 'es', 'fs', 'gs'].map((n) => [n, 32] as [string, number]),
    ['fs_base', 64], ['gs_base', 64], ['k_gs_base', 64],
    ...['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer'].map((n) => [n, 64] as [string, number]),
    ...Array.from({ length: 8 }, (_, i) => [`st${i}`, 80] as [string, number]),
    ...['fctrl', 'fstat', 'ftag', 'fiseg', 'fioff', 'foseg', 'fooff', 'fop'].map((n) => [n, 32] as [string, number]),
    ...Array.from({ length: 16 }, (_, i) => [`xmm${i}`, 128] as [string, number]),
    ['mxcsr', 32],
  ];
  const xml = `<feature name="org.gnu.gdb.i386.core">${names.map(([n, b], i) => `<reg name="${n}" bitsize="${b}"${i === 0 ? ' regnum="0"' : ''}/>`).join('')}</feature>`;
  const files = { 'target.xml': '<target><architecture>i386:x86-64</architecture><xi:include href="i386-64bit.xml"/></target>', 'i386-64bit.xml': xml };
  const layout = layoutOf(await loadTargetDescription(reader(files)));
  t.equal(layout.size, 608, 'QEMU 7.2 sends a 608-byte g packet');
  t.same([layout.require('rip').offset, layout.require('cr3').offset, layout.require('gs_base').offset], [128, 204, 172]);
  t.same([layout.require('cr3').regnum, layout.require('efer').regnum, layout.require('mxcsr').regnum], [29, 32, 65]);
});

t.test('target description: bad inputs are ProtocolErrors', async (t) => {
  await t.rejects(loadTargetDescription(reader({ 'target.xml': '<target><xi:include href="target.xml"/></target>' })), ProtocolError, 'include cycle');
  await t.rejects(loadTargetDescription(reader({ 'target.xml': '<target><xi:include href="a:b"/></target>' })), ProtocolError, 'unsafe annex');
  await t.rejects(loadTargetDescription(reader({ 'target.xml': '<feature name="f"><reg name="a" bitsize="sixty"/></feature>' })), ProtocolError);
  const dup = await loadTargetDescription(reader({ 'target.xml': '<feature name="f"><reg name="a" bitsize="8" regnum="1"/><reg name="b" bitsize="8" regnum="1"/></feature>' }));
  t.throws(() => layoutOf(dup), ProtocolError, 'register number twice');
  const none = await loadTargetDescription(reader({ 'target.xml': '<target><architecture>x</architecture></target>' }));
  t.throws(() => layoutOf(none), ProtocolError, 'no registers');
});

t.test('register layout decode/encode', async (t) => {
  const layout = new RegisterLayout([
    { name: 'a', bitsize: 64 },
    { name: 'b', bitsize: 32 },
    { name: 'c', bitsize: 128 },
  ]);
  const block = Buffer.from('8877665544332211' + '78563412' + '00'.repeat(15) + '80', 'hex');
  const v = layout.decode(block);
  t.equal(v.get('a'), 0x1122334455667788n);
  t.equal(v.get('b'), 0x12345678n);
  t.equal(v.get('c'), 1n << 127n);
  t.same([...layout.decode(block.subarray(0, 12)).keys()], ['a', 'b'], 'short g reply: what fits');
  const out = layout.encode(block, { b: 0xdeadbeefn });
  t.equal(out.subarray(8, 12).toString('hex'), 'efbeadde');
  t.equal(out.subarray(0, 8).toString('hex'), block.subarray(0, 8).toString('hex'), 'others untouched');
  t.equal(layout.encode(block, new Map([['b', -1n]])).subarray(8, 12).toString('hex'), 'ffffffff');
  t.throws(() => layout.encode(block, { b: 1n << 32n }), GdbArgumentError, 'too wide');
  t.throws(() => layout.encode(block, { zz: 1n }), GdbArgumentError, 'unknown');
});
