/**
 * Finds the one container a user means. A spec is, in this order of precedence:
 * `pid:<host pid>` (any process or thread in it), a full id, a name, a hostname, or an id prefix.
 * Exact matches win over prefixes, so a hostname that happens to be hex is still found by name.
 * Anything that matches several containers is an error listing them; the list is guest data.
 */
import { VmiError } from '../errors';
import type { Container } from './model';
import { tasksOf } from './model';

/** How many candidates an ambiguity error names before it says "and N more". */
const MAX_LISTED = 10;

/** No container matches the spec. */
export class ContainerNotFoundError extends VmiError {
  readonly spec: string;
  constructor(spec: string, message?: string) {
    super('ENOCONTAINER', message ?? `no container matches ${JSON.stringify(spec)}`);
    this.spec = spec;
  }
}

/** Several containers match the spec; `candidates` are their ids. */
export class AmbiguousContainerError extends VmiError {
  readonly spec: string;
  readonly candidates: string[];
  constructor(spec: string, how: string, candidates: Container[]) {
    const listed = candidates.slice(0, MAX_LISTED).map(label).join(', ');
    const more = candidates.length > MAX_LISTED ? ` and ${candidates.length - MAX_LISTED} more` : '';
    super('EAMBIGUOUS', `${JSON.stringify(spec)} ${how} ${candidates.length} containers: ${listed}${more}`);
    this.spec = spec;
    this.candidates = candidates.map((c) => c.id);
  }
}

function label(c: Container): string {
  const id = /^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id;
  return `${JSON.stringify(id)} (hostname ${JSON.stringify(c.hostname)})`;
}

function one(spec: string, how: string, found: Container[]): Container | undefined {
  if (found.length > 1) throw new AmbiguousContainerError(spec, how, found);
  return found[0];
}

export function resolveContainer(list: Container[], spec: string): Container {
  if (typeof spec !== 'string' || spec.length === 0) throw new ContainerNotFoundError(String(spec), 'no container given');

  if (spec.startsWith('pid:')) {
    const text = spec.slice(4);
    if (!/^[0-9]{1,10}$/.test(text)) throw new ContainerNotFoundError(spec, `${JSON.stringify(spec)}: pid: needs a decimal host pid`);
    const pid = Number(text);
    const found = list.filter((c) => c.processes.some((p) => tasksOf(p).some((t) => t.pid === pid)) || c.pids.includes(pid));
    const c = one(spec, 'names a pid in', found);
    if (c) return c;
    throw new ContainerNotFoundError(spec, `no container has a process with host pid ${pid}`);
  }

  for (const [how, test] of [
    ['is the id of', (c: Container) => c.id === spec],
    ['is the name of', (c: Container) => c.name !== undefined && c.name === spec],
    ['is the hostname of', (c: Container) => c.hostname === spec],
    ['is an id prefix of', (c: Container) => c.id.startsWith(spec)],
  ] as const) {
    const c = one(spec, how, list.filter(test));
    if (c) return c;
  }
  throw new ContainerNotFoundError(spec);
}
