/** The JSON of `vmictl cp`: what was copied, and what was not and why (paths are guest data). */
import type { CopyReport } from '../../lib/ops';

export interface CpJson {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  skipped: { path: string; reason: string }[];
  errors: { path: string; reason: string }[];
  /** skipped and failed entries beyond those listed, counted */
  dropped: { skipped: number; errors: number };
  resolvedInRoot?: boolean;
  via?: number;
}

export function cpJson(r: CopyReport): CpJson {
  const entry = (e: { path: string; reason: string }) => ({ path: e.path, reason: e.reason });
  return {
    files: r.files,
    directories: r.directories,
    symlinks: r.symlinks,
    bytes: r.bytes,
    skipped: r.skipped.map(entry),
    errors: r.errors.map(entry),
    dropped: { skipped: r.dropped.skipped, errors: r.dropped.errors },
    ...(r.resolvedInRoot !== undefined ? { resolvedInRoot: r.resolvedInRoot } : {}),
    ...(r.via !== undefined ? { via: r.via } : {}),
  };
}
