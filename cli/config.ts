/**
 * The config file, $XDG_CONFIG_HOME/vmictl/config.json: VMs by name, each with the values of the
 * options that reach it. What it names is given full control of (QMP, the gdbstub, the vmlinux the
 * guard trusts), so a file or directory someone else could write is refused, as is anything in
 * it vmictl does not know: a misspelt key would otherwise be a setting silently not applied.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { VmiError } from '../lib/errors';
import { parseSocketAddress } from '../lib/util/address';

export const VM_FIELDS = ['qmp', 'gdb', 'vmlinux', 'profile'] as const;
export type VmField = (typeof VM_FIELDS)[number];
export type VmEntry = Partial<Record<VmField, string>>;

export interface VmictlConfig {
  file: string;
  default?: string;
  vms: Record<string, VmEntry>;
}

/** A config file's own size is a few hundred bytes; more is not one. */
const MAX_CONFIG_BYTES = 64 * 1024;
const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** $XDG_CONFIG_HOME/vmictl/config.json, or ~/.config/vmictl/config.json (a relative XDG_CONFIG_HOME is ignored, as the spec says). */
export function configFile(): string {
  const xdg = process.env.XDG_CONFIG_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.config'), 'vmictl', 'config.json');
}

function configError(file: string, what: string): VmiError {
  return new VmiError('EUSAGE', `config file ${file}: ${what}`);
}

/** Owned by us, and writable by no one else: group or others could otherwise point vmictl at their VM or vmlinux. */
function checkOwnership(path: string, st: { uid: number; mode: number }, file: string): void {
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw configError(file, `${path} belongs to uid ${st.uid}, not to you (${uid})`);
  if ((st.mode & 0o022) !== 0) throw configError(file, `${path} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}): chmod go-w it`);
}

/** The file's text, or undefined when there is no file. */
function readConfigText(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw configError(file, `cannot open it: ${(err as Error).message}`);
  }
  try {
    const dir = dirname(file);
    checkOwnership(dir, statSync(dir), file);
    const st = fstatSync(fd);
    if (!st.isFile()) throw configError(file, 'is not a regular file');
    checkOwnership(file, st, file);
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let got = 0;
    for (let n; got < buf.length && (n = readSync(fd, buf, got, buf.length - got, null)) > 0;) got += n;
    if (got > MAX_CONFIG_BYTES) throw configError(file, `is larger than ${MAX_CONFIG_BYTES} bytes`);
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unknownKeys(obj: Record<string, unknown>, known: readonly string[]): string[] {
  return Object.keys(obj).filter((k) => !known.includes(k));
}

/** A field's value as the option would take it, checked as the option's value is later (addresses) or stricter (absolute paths). */
function checkField(file: string, name: string, field: VmField, value: unknown): string {
  const where = `vms.${name}.${field}`;
  if (typeof value !== 'string' || value === '') throw configError(file, `${where} must be a non-empty string`);
  if (field === 'qmp' || field === 'gdb') {
    let address;
    try {
      address = parseSocketAddress(value);
    } catch (err) {
      throw configError(file, `${where}: ${(err as Error).message}`);
    }
    if (address.kind === 'unix' && !isAbsolute(address.path)) throw configError(file, `${where}: a unix socket path must be absolute: ${JSON.stringify(value)}`);
  } else if (!isAbsolute(value)) {
    throw configError(file, `${where} must be an absolute path: ${JSON.stringify(value)}`);
  }
  return value;
}

/** Checks the parsed file against the format; every failure names the file and the key. */
export function parseConfig(file: string, text: string): VmictlConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw configError(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw configError(file, 'must hold a JSON object');
  const extra = unknownKeys(doc, ['default', 'vms']);
  if (extra.length) throw configError(file, `unknown key ${JSON.stringify(extra[0])} (known: default, vms)`);
  const rawVms = doc.vms ?? {};
  if (!isObject(rawVms)) throw configError(file, '"vms" must be an object of VMs by name');
  const vms: Record<string, VmEntry> = {};
  for (const [name, raw] of Object.entries(rawVms)) {
    if (!VM_NAME.test(name)) throw configError(file, `bad VM name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-', at most 64`);
    if (!isObject(raw)) throw configError(file, `vms.${name} must be an object`);
    const bad = unknownKeys(raw, VM_FIELDS);
    if (bad.length) throw configError(file, `unknown key ${JSON.stringify(bad[0])} in vms.${name} (known: ${VM_FIELDS.join(', ')})`);
    const entry: VmEntry = {};
    for (const field of VM_FIELDS) if (raw[field] !== undefined) entry[field] = checkField(file, name, field, raw[field]);
    vms[name] = entry;
  }
  const def = doc.default;
  if (def !== undefined) {
    if (typeof def !== 'string') throw configError(file, '"default" must be the name of a VM');
    if (!Object.hasOwn(vms, def)) throw configError(file, `"default" names ${JSON.stringify(def)}, which is not in "vms"`);
  }
  return { file, default: def, vms };
}

/** The config file, checked; undefined when there is none. */
export function loadConfig(file = configFile()): VmictlConfig | undefined {
  const text = readConfigText(file);
  return text === undefined ? undefined : parseConfig(file, text);
}

/** The entry `name` names, or a usage error that says which names there are. */
export function namedVm(config: VmictlConfig | undefined, name: string): VmEntry {
  if (!config) throw new VmiError('EUSAGE', `no VM named ${JSON.stringify(name)}: there is no config file (${configFile()})`);
  const entry = Object.hasOwn(config.vms, name) ? config.vms[name] : undefined;
  if (!entry) {
    const known = Object.keys(config.vms);
    throw configError(config.file, `no VM named ${JSON.stringify(name)} (${known.length ? `it has ${known.join(', ')}` : 'it names no VM'})`);
  }
  return entry;
}
