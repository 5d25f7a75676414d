/**
 * The automatic profile: when no profile file matches the running kernel, one is built from guest
 * memory (kallsyms + BTF) and cached under the user's cache directory, named by a hash of the
 * banner, where the next run finds it like any other profile.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { CallOptions } from '../../util/deadline';
import type { PhysicalRange } from '../../memory/physical';
import type { PageCache } from '../../memory/page-cache';
import { Kernel } from '../kernel';
import { buildProfileFromMemory } from './from-memory';
import { Profile } from './profile';
import { writeProfile } from './write';

/** $XDG_CACHE_HOME/vmictl, or ~/.cache/vmictl. */
export function defaultProfileCache(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmictl');
}

/** The cache file name for a banner. */
export function cachedProfileName(banner: string): string {
  return `auto-${createHash('sha256').update(banner).digest('hex').slice(0, 16)}.json`;
}

/** Builds the profile from memory, caches it in `cacheDir`, and opens the kernel with it. */
export async function autoProfileKernel(
  memory: PageCache,
  ram: PhysicalRange[],
  cacheDir: string,
  opts: CallOptions & { onNotice?: (message: string) => void } = {},
): Promise<Kernel> {
  // the scan reads all of RAM once: past the page cache, which would only churn
  const built = await buildProfileFromMemory(memory.backend, ram, opts);
  const file = join(cacheDir, cachedProfileName(built.stats.banner));
  let where = file;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeProfile(built.doc, file);
  } catch (err) {
    where = `not cached: ${(err as Error).message}`;
  }
  opts.onNotice?.(
    `no profile matches ${built.stats.banner.split(' (')[0]}: built one from guest memory (kallsyms + BTF) ` +
      `in ${built.stats.seconds.total.toFixed(1)} s (${where})`,
  );
  return Kernel.open(memory, new Profile(built.doc, file), { ...opts, ram });
}
