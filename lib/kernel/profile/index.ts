/**
 * Kernel profiles: struct layouts, enums and symbol addresses in Volatility 3's ISF JSON format
 * (what dwarf2json writes), so existing ISF files load unchanged.
 *
 * - `Profile`: lookups (`typeSize`, `field`, `fieldOffset`, `hasField`, `firstField`, `symbol`, `banner`).
 * - `findProfile(banner, dirs)` / `loadProfileFor(file, banner)`: choosing the profile of a running kernel.
 * - `buildProfile({ vmlinux })` + `writeProfile(doc, file)`: making one from a debug vmlinux.
 */
export { Profile, normalizeBanner, profileBanner, type FieldLayout } from './profile';
export { findProfile, listProfiles, loadProfileFor, assertProfileMatches, readProfileBanner, bannerOfProfileText, type ProfileCandidate } from './select';
export { loadProfileDocument, parseProfile, readProfileText, validateIsf } from './load';
export { serializeProfile, writeProfile } from './write';
export { buildProfile, modelToIsf, type BuildOptions, type BuildResult, type BuildStats } from './build';
export * from './isf';
