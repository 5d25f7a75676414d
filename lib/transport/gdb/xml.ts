/**
 * Just enough XML for gdb target descriptions: elements with attributes, text, comments,
 * processing instructions, DOCTYPE and CDATA, and the five predefined entities plus numeric ones.
 * Input comes from the stub (untrusted): malformed markup is a ProtocolError, never a crash.
 */
import { ProtocolError } from '../../errors';

export type XmlToken =
  | { type: 'open'; name: string; attrs: Record<string, string>; selfClosing: boolean }
  | { type: 'close'; name: string }
  | { type: 'text'; text: string };

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ATTR = /\s*([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*("([^"]*)"|'([^']*)')/y;

export function decodeEntities(text: string, where: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);|&/g, (all, ent: string | undefined) => {
    if (ent === undefined) throw new ProtocolError(`${where}: stray '&'`);
    switch (ent) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
      default: {
        const code = ent[1] === 'x' ? Number.parseInt(ent.slice(2), 16) : Number.parseInt(ent.slice(1), 10);
        if (!(code >= 0 && code <= 0x10ffff)) throw new ProtocolError(`${where}: bad character reference ${all}`);
        return String.fromCodePoint(code);
      }
    }
  });
}

/** Splits a document into tokens, checking that elements nest properly. */
export function tokenizeXml(doc: string, where: string): XmlToken[] {
  const tokens: XmlToken[] = [];
  const stack: string[] = [];
  let i = 0;
  const fail = (msg: string): never => {
    throw new ProtocolError(`${where}: ${msg} at offset ${i}`);
  };
  const skipTo = (end: string) => {
    const j = doc.indexOf(end, i);
    if (j < 0) fail(`unterminated markup (expected ${JSON.stringify(end)})`);
    i = j + end.length;
  };
  while (i < doc.length) {
    const lt = doc.indexOf('<', i);
    const textEnd = lt < 0 ? doc.length : lt;
    if (textEnd > i) {
      const text = doc.slice(i, textEnd);
      if (text.trim() !== '') tokens.push({ type: 'text', text: decodeEntities(text, where) });
      i = textEnd;
      continue;
    }
    if (doc.startsWith('<!--', i)) {
      i += 4;
      skipTo('-->');
    } else if (doc.startsWith('<?', i)) {
      skipTo('?>');
    } else if (doc.startsWith('<![CDATA[', i)) {
      const start = i + 9;
      skipTo(']]>');
      tokens.push({ type: 'text', text: doc.slice(start, i - 3) });
    } else if (doc.startsWith('<!', i)) {
      // DOCTYPE, possibly with an internal subset in brackets
      const bracket = doc.indexOf('[', i);
      const close = doc.indexOf('>', i);
      if (bracket >= 0 && close >= 0 && bracket < close) {
        i = bracket;
        skipTo(']');
      }
      skipTo('>');
    } else if (doc.startsWith('</', i)) {
      i += 2;
      NAME.lastIndex = i;
      const m = NAME.exec(doc);
      if (!m) fail('bad end tag');
      const name = m![0];
      i = NAME.lastIndex;
      const gt = /\s*>/y;
      gt.lastIndex = i;
      if (!gt.exec(doc)) fail(`bad end tag </${name}`);
      i = gt.lastIndex;
      const open = stack.pop();
      if (open !== name) fail(`</${name}> closes <${open ?? 'nothing'}>`);
      tokens.push({ type: 'close', name });
    } else {
      i += 1;
      NAME.lastIndex = i;
      const m = NAME.exec(doc);
      if (!m) fail('bad start tag');
      const name = m![0];
      i = NAME.lastIndex;
      const attrs: Record<string, string> = Object.create(null) as Record<string, string>;
      for (;;) {
        ATTR.lastIndex = i;
        const a = ATTR.exec(doc);
        if (!a) break;
        attrs[a[1]] = decodeEntities(a[3] ?? a[4], where);
        i = ATTR.lastIndex;
      }
      const end = /\s*(\/?)>/y;
      end.lastIndex = i;
      const e = end.exec(doc);
      if (!e) fail(`bad start tag <${name}`);
      i = end.lastIndex;
      const selfClosing = e![1] === '/';
      if (!selfClosing) stack.push(name);
      tokens.push({ type: 'open', name, attrs, selfClosing });
    }
  }
  if (stack.length) throw new ProtocolError(`${where}: <${stack[stack.length - 1]}> is never closed`);
  return tokens;
}
