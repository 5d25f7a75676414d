import t from 'tap';
import { ProtocolError } from '../../lib/errors';
import {
  FrameEvent,
  PacketDecoder,
  checksum,
  decodeRunLength,
  encodePacket,
  encodeRunLength,
  escapeBinary,
  unescapeBinary,
} from '../../lib/transport/gdb/packet';
import { decodeHex, readUIntLE, writeUIntLE } from '../../lib/transport/gdb/hex';

const latin1 = (s: string) => Buffer.from(s, 'latin1');
const cs = (s: string) => checksum(latin1(s)).toString(16).padStart(2, '0');

function decodeAll(chunks: (string | Buffer)[], limit?: number): FrameEvent[] {
  const events: FrameEvent[] = [];
  const d = new PacketDecoder((ev) => events.push(ev), limit);
  for (const c of chunks) d.push(typeof c === 'string' ? latin1(c) : c);
  return events;
}

function summary(events: FrameEvent[]): string[] {
  return events.map((e) => {
    switch (e.type) {
      case 'packet':
      case 'notification':
        return `${e.type}:${e.data.toString('latin1')}`;
      case 'bad-checksum':
        return `bad:${e.data.toString('latin1')}:${e.expected.toString(16)}/${e.received}`;
      case 'invalid':
        return `invalid:${e.error.message}`;
      default:
        return e.type;
    }
  });
}

t.test('checksum is the byte sum mod 256', async (t) => {
  t.equal(checksum(latin1('')), 0);
  t.equal(checksum(latin1('g')), 0x67);
  t.equal(checksum(latin1('qC')), 0xb4);
  t.equal(checksum(latin1('m0,4')), 0xfd);
  t.equal(checksum(Buffer.from([0xff, 0xff, 0x03])), 0x01);
});

t.test('encodePacket: exact wire bytes', async (t) => {
  // the first four were accepted by a real QEMU 7.2 gdbstub
  t.equal(encodePacket('g').toString('latin1'), '$g#67');
  t.equal(encodePacket('qC').toString('latin1'), '$qC#b4');
  t.equal(encodePacket('m0,4').toString('latin1'), '$m0,4#fd');
  t.equal(encodePacket('m4,4').toString('latin1'), '$m4,4#01');
  t.equal(encodePacket('').toString('latin1'), '$#00');
  t.equal(encodePacket('Qqemu.PhyMemMode:1').toString('latin1'), `$Qqemu.PhyMemMode:1#${cs('Qqemu.PhyMemMode:1')}`);
  // checksum digits are two lowercase hex digits, zero-padded
  t.match(encodePacket('\x01').toString('latin1'), /^\$\x01#01$/);
});

t.test('encodePacket escapes # $ } * and checksums the escaped bytes', async (t) => {
  const wire = encodePacket(Buffer.from([0x23, 0x24, 0x7d, 0x2a, 0x41]));
  // } 0x03, } 0x04, } 0x5d, } 0x0a, A; sum = 4*0x7d + 0x03 + 0x04 + 0x5d + 0x0a + 0x41 = 0x2a3
  t.same([...wire], [0x24, 0x7d, 0x03, 0x7d, 0x04, 0x7d, 0x5d, 0x7d, 0x0a, 0x41, 0x23, 0x61, 0x33]);
  t.equal(wire.toString('latin1').slice(-3), '#a3');
});

t.test('escapeBinary / unescapeBinary', async (t) => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const esc = escapeBinary(all);
  t.equal(esc.length, 256 + 4, 'four bytes need escaping');
  t.notOk(esc.includes(0x23) || esc.includes(0x24) || esc.includes(0x2a), 'no raw # $ * left');
  t.same(unescapeBinary(esc), all, 'round trip');
  t.same(unescapeBinary(latin1('a}]b')), latin1('a}b'));
  t.throws(() => unescapeBinary(latin1('abc}')), ProtocolError);
});

t.test('decodeRunLength', async (t) => {
  t.equal(decodeRunLength(latin1('0* ')).toString('latin1'), '0000', "' ' = 3 more");
  t.equal(decodeRunLength(latin1('1*"')).toString('latin1'), '111111', "'\"' = 5 more");
  t.equal(decodeRunLength(latin1('a*~')).toString('latin1'), 'a'.repeat(98), "'~' = 97 more");
  t.equal(decodeRunLength(latin1('x0* y1*!z')).toString('latin1'), 'x0000y11111z');
  t.equal(decodeRunLength(latin1('plain')).toString('latin1'), 'plain');
  t.throws(() => decodeRunLength(latin1('*a')), ProtocolError, 'nothing to repeat');
  t.throws(() => decodeRunLength(latin1('a*')), ProtocolError, 'no count');
  t.throws(() => decodeRunLength(latin1('a*\x1d')), ProtocolError, 'count below 1');
  t.throws(() => decodeRunLength(latin1('a*~'), 50), ProtocolError, 'expansion limit');
});

t.test('encodeRunLength round-trips and never uses # or $ as a count', async (t) => {
  for (let n = 1; n < 300; n++) {
    const data = latin1(`ab${'0'.repeat(n)}cd`);
    const enc = encodeRunLength(data);
    t.notOk(/\*[#$]/.test(enc.toString('latin1')), `run of ${n}`);
    t.equal(decodeRunLength(enc).toString('latin1'), data.toString('latin1'));
  }
  // a run of 8 would need count 7 ('$'), and 7 would need '#': so 6 zeros ('"' = 5 more), then 2
  t.equal(encodeRunLength(latin1('00000000')).toString('latin1'), '0*"00');
});

t.test('decoder: one packet, acks, nacks, junk', async (t) => {
  const d = new PacketDecoder(() => undefined);
  const events: FrameEvent[] = [];
  const d2 = new PacketDecoder((e) => events.push(e));
  d2.push(latin1('+-x$OK#9a+'));
  t.same(summary(events), ['ack', 'nack', 'packet:OK', 'ack']);
  t.equal(d2.junkBytes, 1);
  t.equal(d.junkBytes, 0);
});

t.test('decoder: a packet torn at every possible point', async (t) => {
  const wire = `+$T05thread:01;#${cs('T05thread:01;')}$OK#9a`;
  for (let cut = 0; cut <= wire.length; cut++) {
    for (let cut2 = cut; cut2 <= wire.length; cut2 += 3) {
      const ev = decodeAll([wire.slice(0, cut), wire.slice(cut, cut2), wire.slice(cut2)]);
      t.same(summary(ev), ['ack', 'packet:T05thread:01;', 'packet:OK'], `cut at ${cut}/${cut2}`);
    }
  }
  // one byte at a time
  t.same(summary(decodeAll([...wire])), ['ack', 'packet:T05thread:01;', 'packet:OK']);
});

t.test('decoder: many packets in one read', async (t) => {
  const payloads = Array.from({ length: 50 }, (_, i) => `reply${i}`);
  const wire = payloads.map((p) => `+${encodePacket(p).toString('latin1')}`).join('');
  const ev = decodeAll([wire]);
  t.equal(ev.length, 100);
  t.same(ev.filter((e) => e.type === 'packet').map((e) => (e as { data: Buffer }).data.toString()), payloads);
});

t.test('decoder: bad checksum, non-hex checksum, uppercase checksum', async (t) => {
  t.same(summary(decodeAll(['$OK#9b'])), ['bad:OK:9a/9b']);
  t.same(summary(decodeAll(['$OK#zz'])), ['bad:OK:9a/zz']);
  t.same(summary(decodeAll(['$qC#B4'])), ['packet:qC']);
  // the decoder carries on after a bad one
  t.same(summary(decodeAll(['$OK#00$OK#9a'])), ['bad:OK:9a/00', 'packet:OK']);
});

t.test('decoder: run-length encoded packets are expanded; bad encoding is reported, not fatal', async (t) => {
  const body = '0* 1*!';
  t.same(summary(decodeAll([`$${body}#${cs(body)}`])), ['packet:000011111']);
  const bad = '*0';
  const ev = decodeAll([`$${bad}#${cs(bad)}$OK#9a`]);
  t.equal(ev[0].type, 'invalid');
  t.same(summary(ev.slice(1)), ['packet:OK']);
});

t.test('decoder: escapes are left for the consumer (binary replies only)', async (t) => {
  const ev = decodeAll([encodePacket(Buffer.from('l<a}b>', 'latin1'))]);
  t.equal(ev[0].type, 'packet');
  const data = (ev[0] as { data: Buffer }).data;
  t.equal(data.toString('latin1'), 'l<a}]b>');
  t.equal(unescapeBinary(data).toString('latin1'), 'l<a}b>');
});

t.test('decoder: a $ inside a packet restarts it', async (t) => {
  const events: FrameEvent[] = [];
  const d = new PacketDecoder((e) => events.push(e));
  d.push(latin1('$garb$OK#9a'));
  t.same(summary(events), ['packet:OK']);
  t.equal(d.restarts, 1);
});

t.test('decoder: notifications', async (t) => {
  const body = 'Stop:T05';
  t.same(summary(decodeAll([`%${body}#${cs(body)}`])), ['notification:Stop:T05']);
});

t.test('decoder: oversized packet is a ProtocolError, even when torn', async (t) => {
  const d = new PacketDecoder(() => undefined, 1000);
  d.push(latin1(`$${'a'.repeat(600)}`));
  t.throws(() => d.push(latin1('a'.repeat(600))), ProtocolError);
  const events: FrameEvent[] = [];
  const ok = new PacketDecoder((e) => events.push(e), 1000);
  ok.push(latin1(`$${'a'.repeat(1000)}#${cs('a'.repeat(1000))}`));
  t.equal(events[0].type, 'packet', 'exactly at the limit is fine');
});

t.test('decoder: events before a fatal error in the same chunk are delivered', async (t) => {
  const events: FrameEvent[] = [];
  const d = new PacketDecoder((e) => events.push(e), 10);
  t.throws(() => d.push(latin1(`$OK#9a$${'x'.repeat(20)}`)), ProtocolError);
  t.same(summary(events), ['packet:OK']);
});

t.test('hex helpers', async (t) => {
  t.same(decodeHex('00ff10', 'x'), Buffer.from([0, 255, 16]));
  t.throws(() => decodeHex('0g', 'x'), ProtocolError);
  t.throws(() => decodeHex('abc', 'x'), ProtocolError);
  t.equal(readUIntLE(Buffer.from([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])), 0x1122334455667788n);
  t.equal(writeUIntLE(0x1122334455667788n, 8).toString('hex'), '8877665544332211');
  t.equal(writeUIntLE(-1n, 4).toString('hex'), 'ffffffff');
  t.equal(readUIntLE(Buffer.alloc(16, 0xff)), (1n << 128n) - 1n);
});
