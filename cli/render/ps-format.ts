/**
 * `ps --filter`, `ps -q` and `ps --format`, after docker ps. Filters of one key are OR, of
 * different keys AND. Template fields are those of the `--json` elements; every value substituted
 * is a guest string and goes through escapeForTerminal, and `--format json` through jsonText.
 */
import { VmiError } from '../../lib/errors';
import type { Container } from '../../lib/containers/model';
import { escapeForTerminal } from '../../lib/util/escape';
import { psJson } from './containers';
import { jsonText } from './json';

export type PsFilterKey = 'runtime' | 'state' | 'name' | 'id';

export const PS_FILTER_KEYS: readonly PsFilterKey[] = ['runtime', 'state', 'name', 'id'];

/** Values per key, from repeated `-f KEY=VALUE`. */
export type PsFilters = Map<PsFilterKey, string[]>;

export function parsePsFilters(specs: readonly string[]): PsFilters {
  const out: PsFilters = new Map();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const key = spec.slice(0, eq) as PsFilterKey;
    if (eq < 1 || !PS_FILTER_KEYS.includes(key)) {
      throw new VmiError('EUSAGE', `--filter takes KEY=VALUE with KEY one of ${PS_FILTER_KEYS.join(', ')}, not ${JSON.stringify(spec)}`);
    }
    out.set(key, [...(out.get(key) ?? []), spec.slice(eq + 1)]);
  }
  return out;
}

function matches(c: Container, key: PsFilterKey, value: string): boolean {
  switch (key) {
    case 'runtime': return c.runtime === value;
    case 'state': return c.state === value;
    // a substring, as docker's name filter; the hostname stands in where the runtime gave no name
    case 'name': return c.hostname.includes(value) || (c.name !== undefined && c.name.includes(value));
    case 'id': return c.id.startsWith(value);
  }
}

export function filterContainers(list: readonly Container[], filters: PsFilters): Container[] {
  return list.filter((c) => [...filters].every(([key, values]) => values.some((v) => matches(c, key, v))));
}

/**
 * The id `-q` and `{{.ID}}` print: a 64-hex id cut to 12 as in the table, any other id whole.
 * The table marks a long name as cut ('a-very-long…'), which no command would accept back, and
 * these outputs are for feeding to other commands (`vmictl inspect $(vmictl ps -q)`).
 */
function scriptId(id: string, full: boolean): string {
  return !full && /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
}

/** `ps -q`: one id a line, short like the table's unless `fullIds`. */
export function renderPsQuiet(list: readonly Container[], opts: { fullIds?: boolean } = {}): string {
  return list.map((c) => escapeForTerminal(scriptId(c.id, opts.fullIds === true)) + '\n').join('');
}

/** The fields a `--format` template may name, each read from the `--json` element of a container. */
const TEMPLATE_FIELDS: Record<string, (c: Container, fullIds: boolean) => string> = {
  ID: (c, full) => scriptId(c.id, full),
  Runtime: (c) => c.runtime,
  Name: (c) => c.name ?? '',
  PodUid: (c) => c.podUid ?? '',
  Hostname: (c) => c.hostname,
  State: (c) => c.state,
  InitPid: (c) => String(psJson(c).initPid),
  InitNsPid: (c) => String(psJson(c).initNsPid),
  Pids: (c) => psJson(c).pids.join(','),
  Processes: (c) => String(psJson(c).processes),
  Cgroup: (c) => c.cgroup,
};

export const PS_TEMPLATE_FIELDS: readonly string[] = Object.keys(TEMPLATE_FIELDS);

const PLACEHOLDER = /\{\{\s*\.(\w*)\s*\}\}/g;

/** Checks a template before anything is read from the VM, so a typo costs no guest reads. */
export function checkPsFormat(format: string): void {
  if (format === 'json') return;
  for (const m of format.matchAll(PLACEHOLDER)) {
    if (!Object.hasOwn(TEMPLATE_FIELDS, m[1]!)) {
      throw new VmiError('EUSAGE', `--format: unknown field {{.${m[1]}}}; fields: ${PS_TEMPLATE_FIELDS.join(', ')}`);
    }
  }
}

/** `ps --format json` (one JSON object a line, as docker's) or `--format '{{.ID}} {{.State}}'`. */
export function renderPsFormat(list: readonly Container[], format: string, opts: { fullIds?: boolean } = {}): string {
  checkPsFormat(format);
  if (format === 'json') return list.map((c) => jsonText(psJson(c)) + '\n').join('');
  return list
    .map((c) => format.replace(PLACEHOLDER, (_all, field: string) => escapeForTerminal(TEMPLATE_FIELDS[field]!(c, opts.fullIds === true))) + '\n')
    .join('');
}
