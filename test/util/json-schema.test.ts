// The schema validator the --json tests use: each keyword accepts what conforms and names what does not.
import t from 'tap';
import { validate, type Schema } from '../helpers/json-schema';

t.test('type: one or several; integer is a number, not the reverse', async (t) => {
  t.same(validate({ type: 'string' }, 'a'), []);
  t.match(validate({ type: 'string' }, 1), ['$: integer, not string']);
  t.same(validate({ type: 'number' }, 3), []);
  t.match(validate({ type: 'integer' }, 1.5), ['$: number, not integer']);
  t.same(validate({ type: ['string', 'null'] }, null), []);
  t.match(validate({ type: 'object' }, []), ['$: array, not object']);
  t.match(validate({ type: 'array' }, {}), ['$: object, not array']);
  t.match(validate({ type: 'boolean' }, 'true'), ['$: string, not boolean']);
});

t.test('required, properties, additionalProperties', async (t) => {
  const s: Schema = { type: 'object', required: ['id'], properties: { id: { type: 'string' }, n: { type: 'integer' } }, additionalProperties: false };
  t.same(validate(s, { id: 'x', n: 1 }), []);
  t.same(validate(s, { id: 'x' }), [], 'an optional property may be absent');
  t.same(validate(s, {}), ['$: required id is missing']);
  t.same(validate(s, { id: 'x', extra: 1 }), ['$: extra is not allowed']);
  t.same(validate(s, { id: 2 }), ['$.id: integer, not string']);
  t.same(validate({ type: 'object', additionalProperties: { type: 'integer' } }, { a: 1, b: 'x' }), ['$.b: string, not integer'], 'additionalProperties as a schema');
  t.same(validate({ type: 'object' }, { anything: 1 }), [], 'without additionalProperties, others are allowed');
});

t.test('items, with the path of the element', async (t) => {
  const s: Schema = { type: 'array', items: { type: 'object', required: ['pid'], properties: { pid: { type: 'integer', minimum: 1 } } } };
  t.same(validate(s, [{ pid: 1 }, { pid: 2 }]), []);
  t.same(validate(s, [{ pid: 1 }, { pid: 0 }, {}]), ['$[1].pid: 0 is below the minimum 1', '$[2]: required pid is missing']);
});

t.test('enum, pattern, minimum', async (t) => {
  t.same(validate({ enum: ['running', 'paused'] }, 'paused'), []);
  t.match(validate({ enum: ['running', 'paused'] }, 'gone'), [/is none of/]);
  t.same(validate({ type: 'string', pattern: '^0x[0-9a-f]+$' }, '0xffff'), []);
  t.match(validate({ type: 'string', pattern: '^0x[0-9a-f]+$' }, 'ffff'), [/does not match/]);
  t.same(validate({ type: 'integer', minimum: 0 }, 0), []);
  t.match(validate({ type: 'integer', minimum: 0 }, -1), [/below the minimum/]);
});

t.test('a keyword it does not know is an error, not ignored', async (t) => {
  t.match(validate({ type: 'object', oneOf: [] } as unknown as Schema, {}), [/uses oneOf/]);
});
