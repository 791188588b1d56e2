/**
 * Reading `nix path-info --json` output: each path's NAR size and references.
 * Nix 2.8 prints an array of objects with a `path` field; later versions print
 * an object keyed by path (null for an invalid one). Both are accepted, and
 * anything malformed is skipped rather than trusted. Pure.
 */
import { STORE_PATH_RE } from '../nix/store-path';

export interface PathInfo {
  narSize: number;
  references: string[];
}

export type PathInfoMap = Map<string, PathInfo>;

function infoOf(raw: unknown): PathInfo | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const o = raw as Record<string, unknown>;
  if (o.valid === false) return undefined;
  const narSize = typeof o.narSize === 'number' && Number.isSafeInteger(o.narSize) && o.narSize >= 0 ? o.narSize : 0;
  const references = Array.isArray(o.references)
    ? o.references.filter((r): r is string => typeof r === 'string' && STORE_PATH_RE.test(r))
    : [];
  return { narSize, references };
}

/** Adds every valid path described in `text` to `into`; returns how many entries were added or replaced. */
export function parsePathInfoJson(text: string, into: PathInfoMap): number {
  const raw: unknown = JSON.parse(text);
  let added = 0;
  const add = (path: unknown, info: PathInfo | undefined) => {
    if (typeof path === 'string' && STORE_PATH_RE.test(path) && info) {
      into.set(path, info);
      added++;
    }
  };
  if (Array.isArray(raw)) {
    for (const entry of raw) add((entry as { path?: unknown } | null)?.path, infoOf(entry));
  } else if (raw !== null && typeof raw === 'object') {
    for (const [path, entry] of Object.entries(raw)) add(path, infoOf(entry));
  } else {
    throw new SyntaxError('nix path-info --json printed neither an array nor an object');
  }
  return added;
}
