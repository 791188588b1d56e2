/**
 * How many bytes a realisation wrote into the shared store: the NAR sizes of
 * the closure members of the realised paths that were registered (made valid)
 * since it started. `nix path-info --json -r` reports both size and
 * registration time (seconds); paths copied along as dependencies count, paths
 * that were there before do not. A copy finishing in the same second for
 * another caller may be counted for both: the count errs high, never low.
 */
import { STORE_PATH_RE } from '../nix/store-path';
import { runOverPaths, type NixRunner } from './nix-command';
import { nixErrorSummary } from './nix-error-text';

/** Sums narSize of the entries registered at or after `sinceSeconds`, in either JSON shape Nix prints. Pure. */
export function bytesRegisteredSince(
  json: string,
  sinceSeconds: number,
  into: Map<string, number> = new Map(),
): Map<string, number> {
  const raw: unknown = JSON.parse(json);
  const consider = (path: unknown, entry: unknown): void => {
    if (typeof path !== 'string' || !STORE_PATH_RE.test(path) || entry === null || typeof entry !== 'object') return;
    const o = entry as { narSize?: unknown; registrationTime?: unknown };
    if (typeof o.narSize !== 'number' || !Number.isSafeInteger(o.narSize) || o.narSize < 0) return;
    if (typeof o.registrationTime !== 'number' || o.registrationTime < sinceSeconds) return;
    into.set(path, o.narSize);
  };
  if (Array.isArray(raw)) for (const e of raw) consider((e as { path?: unknown } | null)?.path, e);
  else if (raw !== null && typeof raw === 'object') for (const [path, e] of Object.entries(raw)) consider(path, e);
  return into;
}

/** Runs `nix path-info --json -r` on `store` for `paths`; total bytes registered since `sinceMs`. */
export async function registeredBytes(
  runner: NixRunner,
  storeUrl: string,
  paths: readonly string[],
  sinceMs: number,
  signal: AbortSignal,
): Promise<number> {
  if (paths.length === 0) return 0;
  const outcomes = await runOverPaths(
    runner,
    { program: 'nix', fixedArgs: ['path-info', '--json', '-r', '--store', storeUrl] },
    paths,
    signal,
  );
  const sizes = new Map<string, number>();
  // One second of slack: registration times are whole seconds.
  const since = Math.floor(sinceMs / 1000) - 1;
  for (const o of outcomes) {
    if (o.exitCode !== 0)
      throw new Error(`nix path-info failed: ${nixErrorSummary(o.stderr) || `exit ${o.exitCode ?? o.signal}`}`);
    bytesRegisteredSince(o.stdout, since, sizes);
  }
  let total = 0;
  for (const n of sizes.values()) total += n;
  return total;
}

/** Sums narSize of every entry that has one (binary caches report no registration time), in either JSON shape. Pure. */
export function narBytesOf(json: string): number {
  const sizes = new Map<string, number>();
  const raw: unknown = JSON.parse(json);
  const add = (path: unknown, entry: unknown): void => {
    const o = entry as { narSize?: unknown } | null;
    if (
      typeof path === 'string' &&
      STORE_PATH_RE.test(path) &&
      typeof o?.narSize === 'number' &&
      Number.isSafeInteger(o.narSize) &&
      o.narSize >= 0
    ) {
      sizes.set(path, o.narSize);
    }
  };
  if (Array.isArray(raw)) for (const e of raw) add((e as { path?: unknown } | null)?.path, e);
  else if (raw !== null && typeof raw === 'object') for (const [path, e] of Object.entries(raw)) add(path, e);
  let total = 0;
  for (const n of sizes.values()) total += n;
  return total;
}

/**
 * What realising `paths` would add at most: the NAR size of their closures
 * as the first source that has them all states it (`nix path-info --json -r`
 * reads narinfos of a binary cache, the database of a store), before
 * anything is copied; 0 when no source can tell.
 */
export async function closureNarBytes(
  runner: NixRunner,
  sourceUrls: readonly string[],
  paths: readonly string[],
  signal: AbortSignal,
): Promise<number> {
  if (paths.length === 0) return 0;
  for (const url of sourceUrls) {
    const outcomes = await runOverPaths(
      runner,
      { program: 'nix', fixedArgs: ['path-info', '--json', '-r', '--store', url] },
      paths,
      signal,
    );
    if (outcomes.every((o) => o.exitCode === 0)) return outcomes.reduce((n, o) => n + narBytesOf(o.stdout), 0);
  }
  return 0;
}
