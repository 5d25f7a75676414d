/**
 * What a QMP socket (untrusted: a wrong socket, a broken proxy) sends: the JSON stream framing
 * (torn reads, nesting, strings with braces, oversized messages), message classification, and
 * the HMP text that comes back inside replies (`info mtree -f`, `gpa2hva`).
 */
import { ProtocolError } from '../../../lib/errors';
import { JsonStreamDecoder } from '../../../lib/transport/qmp/codec';
import { classify } from '../../../lib/transport/qmp/messages';
import { parseGpa2hva, parseMtreeFlat } from '../../../lib/memory/qemu-ram-map';
import { Rng, type Harness } from '../engine';

const MTREE = `FlatView #0
 AS "memory", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): pc.ram
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  0000000000100000-000000007fffffff (prio 0, ram): pc.ram @0000000000100000
  00000000fffc0000-00000000ffffffff (prio 0, romd): pc.bios
  0000000100000000-000000017fffffff (prio 0, ram): pc.ram @0000000080000000
`;

export const qmpStream: Harness = {
  name: 'qmp-stream',
  seeds: () => [
    '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}\r\n',
    '{"return": {}, "id": 1}\r\n{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "STOP"}\r\n{"return": {"status": "paused", "running": false}, "id": 2}\r\n',
    '{"error": {"class": "GenericError", "desc": "no \\"such\\" {command}"}, "id": 3}\r\n',
    `{"return": ${JSON.stringify(MTREE)}, "id": 4}\r\n{"return": "Host virtual address for 0x1000 (pc.ram) is 0x7f4267e01000\\r\\n", "id": 5}\r\n`,
    '{\n  "return": [\n    {"cpu-index": 0, "thread-id": 1234, "props": {"core-id": 0}}\n  ],\n  "id": 6\n}\n',
  ].map((s) => Buffer.from(s, 'utf8')),
  dictionary: ['{', '}', '[', ']', '"', '\\', '\\"', '\\u0000', '\\ud800', ':', ',', '"return"', '"error"', '"event"', '"id"', '"QMP"',
    '"timestamp"', '"class"', '"desc"', 'null', 'true', '1e999', '\r\n', ' (prio 0, ram): ', '-ffffffffffffffff', 'FlatView #1\n AS "memory"\n',
    'Host virtual address for 0x'].map((s) => Buffer.from(s, 'utf8')),
  run(input) {
    let h = 0;
    for (const b of input) h = (h * 31 + b) >>> 0;
    const rng = new Rng(h);
    const dec = new JsonStreamDecoder(1 << 16);
    const onMessage = (msg: Record<string, unknown>) => {
      let m;
      try { m = classify(msg); } catch (err) { if (err instanceof ProtocolError) return; throw err; }
      if (m.kind === 'return' && typeof m.value === 'string') {
        for (const r of parseMtreeFlat(m.value)) {
          if (r.end <= r.start) throw new Error(`mtree region with end <= start: ${r.start}..${r.end}`);
        }
        parseGpa2hva(m.value);
      }
    };
    for (let i = 0; i < input.length;) {
      const n = rng.chance(0.3) ? input.length - i : 1 + rng.below(48);
      try {
        dec.push(input.subarray(i, i + n), onMessage);
      } catch (err) {
        if (err instanceof ProtocolError) return;
        throw err;
      }
      i += n;
    }
  },
};
