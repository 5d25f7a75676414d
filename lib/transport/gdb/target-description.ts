/**
 * Target descriptions (gdb's `target.xml`): the architecture and the registers, read from the stub
 * with `qXfer:features:read` and assembled by following `<xi:include href=…/>` (QEMU's target.xml
 * is a stub that includes i386-64bit.xml). The register layout is built from what the stub says,
 * never from a table of our own.
 */
import { ProtocolError } from '../../errors';
import { RegisterDeclaration, RegisterLayout } from './registers';
import { tokenizeXml } from './xml';

export interface TargetDescription {
  architecture?: string;
  osabi?: string;
  /** Feature names in document order, e.g. org.gnu.gdb.i386.core. */
  features: string[];
  /** Registers in document order, as declared (numbering is done by RegisterLayout). */
  registers: RegisterDeclaration[];
  /** Every annex that was read, root first. */
  files: string[];
}

/** Reads one annex (a file name such as `target.xml`) from the stub. */
export type AnnexReader = (annex: string) => Promise<string>;

const MAX_FILES = 64;
const MAX_DEPTH = 8;
/** Annex names go into a qXfer packet between colons: keep them to plain file names. */
const SAFE_ANNEX = /^[A-Za-z0-9._/-]{1,128}$/;

/** Loads `root` and everything it includes, in document order. */
export async function loadTargetDescription(read: AnnexReader, root = 'target.xml'): Promise<TargetDescription> {
  const desc: TargetDescription = { features: [], registers: [], files: [] };
  const active: string[] = [];

  const load = async (annex: string, feature: string | undefined): Promise<void> => {
    if (!SAFE_ANNEX.test(annex)) throw new ProtocolError('target description: unsafe include name', annex);
    if (active.includes(annex)) throw new ProtocolError(`target description: ${annex} includes itself (${[...active, annex].join(' → ')})`);
    if (active.length >= MAX_DEPTH) throw new ProtocolError(`target description: includes nested deeper than ${MAX_DEPTH}`);
    if (desc.files.length >= MAX_FILES) throw new ProtocolError(`target description: more than ${MAX_FILES} files`);
    desc.files.push(annex);
    active.push(annex);
    const tokens = tokenizeXml(await read(annex), annex);
    const features: (string | undefined)[] = [feature];
    let textOf: 'architecture' | 'osabi' | undefined;
    for (const tok of tokens) {
      if (tok.type === 'text') {
        if (textOf) desc[textOf] = (desc[textOf] ?? '') + tok.text.trim();
        continue;
      }
      if (tok.type === 'close') {
        if (tok.name === 'feature') features.pop();
        textOf = undefined;
        continue;
      }
      switch (tok.name) {
        case 'architecture':
        case 'osabi':
          if (!tok.selfClosing) {
            textOf = tok.name;
            desc[tok.name] = '';
          }
          break;
        case 'feature': {
          const name = tok.attrs.name;
          if (!name) throw new ProtocolError(`${annex}: <feature> without a name`);
          desc.features.push(name);
          if (!tok.selfClosing) features.push(name);
          break;
        }
        case 'reg':
          desc.registers.push(parseReg(tok.attrs, features[features.length - 1], annex));
          break;
        case 'xi:include':
        case 'include': {
          const href = tok.attrs.href;
          if (!href) throw new ProtocolError(`${annex}: <xi:include> without href`);
          await load(href, features[features.length - 1]);
          break;
        }
        default:
          // flags, struct, union, vector, field, target, compatibility: not needed for the layout
          break;
      }
    }
    active.pop();
  };

  await load(root, undefined);
  return desc;
}

function parseReg(attrs: Record<string, string>, feature: string | undefined, annex: string): RegisterDeclaration {
  const name = attrs.name;
  if (!name) throw new ProtocolError(`${annex}: <reg> without a name`);
  const bitsize = parseDecimal(attrs.bitsize, `${annex}: register ${name} bitsize`);
  const regnum = attrs.regnum === undefined ? undefined : parseDecimal(attrs.regnum, `${annex}: register ${name} regnum`);
  return { name, bitsize, regnum, type: attrs.type, group: attrs.group, feature };
}

function parseDecimal(text: string | undefined, what: string): number {
  if (text === undefined || !/^\d{1,6}$/.test(text)) throw new ProtocolError(`${what}: not a number`, text ?? '(missing)');
  return Number(text);
}

/** The register layout a description defines. */
export function layoutOf(desc: TargetDescription): RegisterLayout {
  if (desc.registers.length === 0) throw new ProtocolError(`target description (${desc.files.join(', ')}) declares no registers`);
  return new RegisterLayout(desc.registers);
}
