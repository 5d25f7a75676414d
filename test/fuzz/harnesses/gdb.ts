/**
 * The gdb remote protocol as a stub (untrusted) sends it: the byte-stream packet decoder (torn and
 * merged reads, run-length encoding, checksums), stop replies, hex and binary payloads, `g`
 * register blocks, and target descriptions (XML with includes) turned into a register layout.
 */
import { ProtocolError } from '../../../lib/errors';
import { decodeHex } from '../../../lib/transport/gdb/hex';
import { PacketDecoder, decodeRunLength, encodePacket, encodeRunLength, unescapeBinary, type FrameEvent } from '../../../lib/transport/gdb/packet';
import { RegisterLayout } from '../../../lib/transport/gdb/registers';
import { describeStop, isStopReply, parseStopReply } from '../../../lib/transport/gdb/stop-reply';
import { layoutOf, loadTargetDescription } from '../../../lib/transport/gdb/target-description';
import { DEFAULT_FILES } from '../../helpers/fake-gdb';
import { Rng, type Harness } from '../engine';

const tokens = (words: string[]) => words.map((w) => Buffer.from(w, 'latin1'));

/** rax..r15, rip, eflags as QEMU lays out x86-64 (enough to name stop-reply registers). */
const LAYOUT = new RegisterLayout([
  ...['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip'].map((name) => ({ name, bitsize: 64 })),
  { name: 'eflags', bitsize: 32 },
  { name: 'st0', bitsize: 80 },
  { name: 'xmm0', bitsize: 128 },
]);

function checkStop(text: string): void {
  const r = parseStopReply(text, LAYOUT);
  describeStop(r);
}

function onEvent(ev: FrameEvent): void {
  if (ev.type !== 'packet' && ev.type !== 'notification') return;
  const data = ev.data;
  if (data.length > 0 && isStopReply(data)) {
    try { checkStop(data.toString('latin1')); } catch (err) { if (!(err instanceof ProtocolError)) throw err; }
    return;
  }
  // the same payload as a memory reply, a binary (qXfer) reply and a `g` block
  try { LAYOUT.decode(decodeHex(data, 'g reply')); } catch (err) { if (!(err instanceof ProtocolError)) throw err; }
  try { unescapeBinary(data); } catch (err) { if (!(err instanceof ProtocolError)) throw err; }
}

export const gdbPackets: Harness = {
  name: 'gdb-packets',
  seeds: () => [
    Buffer.concat([Buffer.from('+'), encodePacket('T05thread:01;06:0010000000000000;07:f0ffffff00000000;10:00000081ffffffff;swbreak:;')]),
    Buffer.concat([encodePacket('OK'), Buffer.from('+-'), encodePacket('E14'), encodePacket('T02thread:02;')]),
    encodePacket(encodeRunLength(Buffer.from('0'.repeat(300) + 'ff'.repeat(40) + '0'.repeat(64)))),
    encodePacket('l<target><xi:include href="a.xml"/></target>'),
    encodePacket(Buffer.from([0x7d, 0x03, 0x41, 0x7d, 0x5d, 0x7d, 0x04])),
    Buffer.from('%Stop:T05thread:01;#00'),
    encodePacket('W00;process:1'),
    encodePacket('X09'),
    encodePacket('S05'),
  ],
  dictionary: tokens(['$', '#', '%', '}', '*', '+', '-', 'T05', 'T02', 'W00', 'X09', 'S05', 'thread:', 'core:', 'watch:', 'rwatch:', 'awatch:',
    'swbreak:', 'hwbreak:', 'process:', ';', ':', 'xx', 'ffffffffffffffff', 'E14', 'OK', 'l', 'm', '* ', '*~', '*\x1d']),
  run(input) {
    // packets torn across reads at points derived from the input, so a replay tears them the same way
    let h = 0;
    for (const b of input) h = (h * 31 + b) >>> 0;
    const rng = new Rng(h);
    const dec = new PacketDecoder(onEvent, 1 << 16);
    for (let i = 0; i < input.length;) {
      const n = rng.chance(0.3) ? input.length - i : 1 + rng.below(64);
      try {
        dec.push(input.subarray(i, i + n));
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
      }
      i += n;
    }
    try { decodeRunLength(input, 1 << 16); } catch (err) { if (!(err instanceof ProtocolError)) throw err; }
  },
};

export const gdbStopReply: Harness = {
  name: 'gdb-stop-reply',
  seeds: () => ['T05thread:01;06:0010000000000000;07:f0ffffff00000000;10:00000081ffffffff;swbreak:;', 'T02thread:p1.2;core:1;',
    'T05watch:ffffffff81a00040;thread:02;', 'T05hwbreak:;10:xxxxxxxxxxxxxxxx;library:;', 'W01;process:1a', 'X09;process:2', 'S05',
    'T0511:0000000000000000000000000000000000000000;12:46020000;'].map((s) => Buffer.from(s, 'latin1')),
  dictionary: gdbPackets.dictionary,
  run(input) {
    checkStop(input.toString('latin1'));
  },
};

export const gdbTargetXml: Harness = {
  name: 'gdb-target-xml',
  seeds: () => [
    Buffer.from([DEFAULT_FILES['target.xml'], DEFAULT_FILES['core.xml'], DEFAULT_FILES['sys.xml']].join('\0'), 'utf8'),
    Buffer.from('<target><feature name="f"><reg name="a" bitsize="64"/><reg name="b" bitsize="4096" regnum="999999"/></feature></target>', 'utf8'),
    Buffer.from('<target><![CDATA[x]]><!DOCTYPE t [<!ENTITY a "b">]><architecture>i386&#x3a;x86-64&amp;</architecture><xi:include href="target.xml"/></target>', 'utf8'),
  ],
  dictionary: tokens(['<', '>', '/>', '</', '<reg name="r" bitsize="64"/>', '<feature name="x">', '</feature>', '<xi:include href="core.xml"/>',
    'regnum="', 'bitsize="', '&#x', '&#', '&amp;', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', '<!DOCTYPE', '\0', '"', "'"]),
  async run(input) {
    // the files the stub serves, in the order they are asked for
    const files = input.toString('utf8').split('\0');
    let next = 0;
    try {
      const desc = await loadTargetDescription(async (annex) => {
        if (next >= files.length) throw new ProtocolError(`no annex ${annex}`);
        return files[next++]!;
      });
      const layout = layoutOf(desc);
      layout.decode(Buffer.alloc(Math.min(layout.size, 1 << 16), 0xa5));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
    }
  },
};
