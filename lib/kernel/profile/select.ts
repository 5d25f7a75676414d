/**
 * Choosing the profile for a running kernel by its banner (`Linux version ...`, read from guest
 * memory), the way Volatility matches ISF files to a memory image.
 *
 * Finding the banner of each candidate file does not parse the whole file: the small `metadata`
 * object and the `linux_banner` symbol entry are cut out and parsed on their own, and a file is
 * read only as far as they are (banner-file.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProfileMismatchError, VmiError } from '../../errors';
import { scanProfileBanner } from './banner-file';
import { Profile, normalizeBanner } from './profile';

/** Files in a profile directory that may be profiles. */
const PROFILE_FILE = /\.json(?:\.gz)?$/i;
const MAX_CANDIDATES = 10_000;

/**
 * The JSON value (object) that starts at or after `from` in `text`, found by matching braces
 * outside strings. Returns undefined when the text there is not an object.
 */
function objectAt(text: string, from: number): unknown {
  let i = from;
  while (i < text.length && /\s/.test(text[i])) i++;
  if (text[i] !== '{') return undefined;
  let depth = 0;
  let inString = false;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (inString) {
      if (c === 0x5c) j++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return JSON.parse(text.slice(i, j + 1));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** The value object of the first `"key": {...}` member in the text, if any. */
function memberObject(text: string, key: string): Record<string, unknown> | undefined {
  const needle = JSON.stringify(key);
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
    let i = at + needle.length;
    while (i < text.length && /\s/.test(text[i])) i++;
    if (text[i] !== ':') continue;
    const v = objectAt(text, i + 1);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  }
  return undefined;
}

/** The banner recorded in ISF text, without parsing the whole document. */
export function bannerOfProfileText(text: string): string | undefined {
  const meta = memberObject(text, 'metadata');
  const linux = meta?.linux as Record<string, unknown> | undefined;
  if (linux && typeof linux.banner === 'string' && linux.banner !== '') return normalizeBanner(linux.banner);
  const sym = memberObject(text, 'linux_banner');
  if (sym && typeof sym.constant_data === 'string') {
    const b = normalizeBanner(Buffer.from(sym.constant_data, 'base64').toString('latin1'));
    if (b !== '') return b;
  }
  return undefined;
}

/** The banner recorded in a profile file (plain or gzip JSON), or undefined; reads only as far as it is (banner-file.ts). */
export function readProfileBanner(file: string): string | undefined {
  return scanProfileBanner(file).banner;
}

export interface ProfileCandidate {
  path: string;
  banner: string | undefined;
}

/** Every profile file in the directories (not recursive), with its banner. Unreadable files are skipped. */
export function listProfiles(dirs: readonly string[]): ProfileCandidate[] {
  const out: ProfileCandidate[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir).filter((n) => PROFILE_FILE.test(n)).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      if (out.length >= MAX_CANDIDATES) return out;
      const file = path.join(dir, name);
      try {
        if (!fs.statSync(file).isFile()) continue;
        out.push({ path: file, banner: readProfileBanner(file) });
      } catch {
        // not a profile we can read; it cannot match
      }
    }
  }
  return out;
}

/**
 * Loads the profile whose banner is exactly the running kernel's (after trimming the trailing
 * newline and NULs). Throws VmiError ENOPROFILE, naming the banner and the directories searched,
 * when none matches.
 */
export function findProfile(banner: string, dirs: readonly string[]): Profile {
  const want = normalizeBanner(banner);
  const candidates = listProfiles(dirs);
  for (const c of candidates) {
    if (c.banner === want) return Profile.load(c.path);
  }
  const seen = candidates.filter((c) => c.banner !== undefined).length;
  throw new VmiError(
    'ENOPROFILE',
    `no profile for ${JSON.stringify(want)} in ${dirs.map((d) => JSON.stringify(d)).join(', ') || 'no directories'} ` +
      `(${candidates.length} profile files, ${seen} with a banner); build one with: vmictl profile build --vmlinux <debug vmlinux> -o <dir>/<name>.json`,
  );
}

/**
 * Checks that a profile was made for the running kernel. Throws ProfileMismatchError naming both
 * banners when it was not. Returns false (nothing to compare) when the profile records no banner.
 */
export function assertProfileMatches(profile: Profile, runningBanner: string): boolean {
  const expected = profile.banner;
  if (expected === undefined) return false;
  const found = normalizeBanner(runningBanner);
  if (expected !== found) throw new ProfileMismatchError(expected, found);
  return true;
}

/** Loads a specific profile file and checks it against the running kernel's banner. */
export function loadProfileFor(file: string, runningBanner: string): Profile {
  const profile = Profile.load(file);
  assertProfileMatches(profile, runningBanner);
  return profile;
}
