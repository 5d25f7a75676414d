/** The JSON of `vmictl check`. */
import type { CheckReport } from '../../lib/integrity/check';
import { findingToJson, type FindingKind } from '../../lib/integrity/finding';

export interface FindingJson {
  kind: FindingKind;
  address: string;
  symbol: string;
  expected: string;
  found: string;
  detail?: string;
}

export interface CheckJson {
  findings: FindingJson[];
  checked: CheckReport['checked'];
  recorded?: string;
  mode: CheckReport['mode'];
  notChecked?: string;
  containers?: { checked: number; tasks: number; configuration: string[] };
  ms: number;
}

export function checkJson(r: CheckReport): CheckJson {
  return {
    findings: r.findings.map((f) => findingToJson(f) as unknown as FindingJson),
    checked: { ...r.checked },
    ...(r.recorded !== undefined ? { recorded: r.recorded } : {}),
    mode: r.mode,
    ...(r.notChecked !== undefined ? { notChecked: r.notChecked } : {}),
    ...(r.containers ? { containers: { checked: r.containers.checked, tasks: r.containers.tasks, configuration: [...r.containers.configuration] } } : {}),
    ms: r.ms,
  };
}
