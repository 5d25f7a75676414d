import t from 'tap';
import { ProtocolError } from '../../lib/errors';
import { JsonStreamDecoder, MAX_NESTING, encodeRequest } from '../../lib/transport/qmp/codec';

function decodeAll(decoder: JsonStreamDecoder, chunks: (string | Buffer)[]): unknown[] {
  const out: unknown[] = [];
  for (const c of chunks) decoder.push(Buffer.isBuffer(c) ? c : Buffer.from(c), (m) => out.push(m));
  return out;
}

// The way QEMU 7.2 writes a reply and an event back to back.
const STREAM =
  '{"timestamp": {"seconds": 1795895143, "microseconds": 27808}, "event": "RESUME"}\r\n' +
  '{"return": {"text": "a } b \\" c \\\\", "open": "{[", "ü": "€𝄞"}, "id": 3}\r\n';
const EXPECTED = [
  { timestamp: { seconds: 1795895143, microseconds: 27808 }, event: 'RESUME' },
  { return: { text: 'a } b " c \\', open: '{[', ü: '€𝄞' }, id: 3 },
];

t.test('several messages in one chunk', async (t) => {
  t.same(decodeAll(new JsonStreamDecoder(), [STREAM]), EXPECTED);
});

t.test('every possible split point of the stream gives the same messages', async (t) => {
  const bytes = Buffer.from(STREAM);
  for (let cut = 1; cut < bytes.length; cut++) {
    const got = decodeAll(new JsonStreamDecoder(), [bytes.subarray(0, cut), bytes.subarray(cut)]);
    if (JSON.stringify(got) !== JSON.stringify(EXPECTED)) {
      t.fail(`split at byte ${cut}`, { got });
      return;
    }
  }
  t.pass('all splits decode identically');
});

t.test('one byte per chunk, including inside multi-byte UTF-8', async (t) => {
  const bytes = Buffer.from(STREAM);
  const chunks = [...bytes].map((b) => Buffer.from([b]));
  t.same(decodeAll(new JsonStreamDecoder(), chunks), EXPECTED);
});

t.test('a message is delivered only once complete, and pendingBytes counts the rest', async (t) => {
  const d = new JsonStreamDecoder();
  const out: unknown[] = [];
  d.push(Buffer.from('{"return": {"a": '), (m) => out.push(m));
  t.same(out, []);
  t.equal(d.pendingBytes, 17);
  d.push(Buffer.from('1}, "id": 1}\r\n'), (m) => out.push(m));
  t.same(out, [{ return: { a: 1 }, id: 1 }]);
  t.equal(d.pendingBytes, 0);
});

t.test('pretty-printed (multi-line) objects are framed by braces, not lines', async (t) => {
  const pretty = '{\r\n    "return": {\r\n        "status": "running"\r\n    },\r\n    "id": 1\r\n}\r\n';
  t.same(decodeAll(new JsonStreamDecoder(), [pretty]), [{ return: { status: 'running' }, id: 1 }]);
});

t.test('garbage between messages is a ProtocolError, after earlier messages were delivered', async (t) => {
  const d = new JsonStreamDecoder();
  const out: unknown[] = [];
  t.throws(() => d.push(Buffer.from('{"return": {}, "id": 1}\r\nQEMU 7.2.22 monitor'), (m) => out.push(m)), ProtocolError);
  t.same(out, [{ return: {}, id: 1 }]);
  // Once failed, the stream is not resynchronised.
  t.throws(() => d.push(Buffer.from('{"return": {}, "id": 2}'), (m) => out.push(m)), ProtocolError);
  t.equal(out.length, 1);
});

t.test('invalid JSON inside braces is a ProtocolError', async (t) => {
  t.throws(() => decodeAll(new JsonStreamDecoder(), ['{"return": nope}\r\n']), { name: 'ProtocolError', code: 'EPROTO', message: /invalid JSON/ });
});

t.test('an endless message is cut off at the limit, without waiting for its end', async (t) => {
  const d = new JsonStreamDecoder(1000);
  d.push(Buffer.from('{"return": "' + 'x'.repeat(900)), () => t.fail('no message expected'));
  t.throws(() => d.push(Buffer.from('x'.repeat(200)), () => undefined), { name: 'ProtocolError', message: /exceeds 1000 bytes/ });
  t.equal(d.pendingBytes, 0, 'held bytes are released');
});

t.test('a complete message over the limit in a single chunk is refused too', async (t) => {
  const d = new JsonStreamDecoder(100);
  t.throws(() => d.push(Buffer.from(`{"return": "${'y'.repeat(200)}"}\r\n`), () => undefined), { message: /exceeds 100 bytes/ });
});

t.test('a message of exactly the limit is accepted', async (t) => {
  const msg = `{"return": "${'z'.repeat(86)}"}`;
  t.equal(msg.length, 100);
  t.same(decodeAll(new JsonStreamDecoder(100), [msg.slice(0, 50), msg.slice(50)]), [{ return: 'z'.repeat(86) }]);
});

t.test('the default limit is 64 MiB', async (t) => {
  t.equal(new JsonStreamDecoder().maxMessageBytes, 64 * 1024 * 1024);
});

t.test('nesting deeper than QEMU allows is refused', async (t) => {
  const ok = '['.repeat(MAX_NESTING - 1) + ']'.repeat(MAX_NESTING - 1);
  t.same(decodeAll(new JsonStreamDecoder(), [`{"a": ${ok}}`]).length, 1);
  const deep = '['.repeat(MAX_NESTING);
  t.throws(() => decodeAll(new JsonStreamDecoder(), [`{"a": ${deep}`]), { message: /nested deeper/ });
});

t.test('encodeRequest: exact bytes, fixed key order', async (t) => {
  t.equal(encodeRequest('qmp_capabilities', undefined, 1), '{"execute":"qmp_capabilities","id":1}\n');
  t.equal(
    encodeRequest('human-monitor-command', { 'command-line': 'info registers' }, 7),
    '{"execute":"human-monitor-command","arguments":{"command-line":"info registers"},"id":7}\n',
  );
});
