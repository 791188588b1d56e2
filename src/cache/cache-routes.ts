/**
 * What an HTTP request to the binary cache asks for, decided from its method
 * and raw URL alone. Only the exact names stock Nix uses are accepted; any
 * other URL (percent escapes, dot segments, queries, extra slashes) is
 * refused here, before anything touches the disk, so a client string can
 * never name a file outside the staging area. Pure.
 *
 * Names served:
 *   /nix-cache-info                     GET, HEAD
 *   /<hash32>.narinfo                   GET, HEAD (shared store), PUT (push)
 *   /nar/<hash32>.nar                   GET, HEAD: the NAR of a valid path, as the proxy's own narinfo names it
 *   /nar/<filehash52>.nar[.<ext>]       HEAD, PUT: a pushed NAR, named by the sha256 of its bytes (Nix's naming)
 */
import { HASH_LENGTH } from '../nix/store-path';

export type CacheRoute =
  | { kind: 'cache-info' }
  | { kind: 'narinfo'; hash: string }
  | { kind: 'served-nar'; hash: string }
  | { kind: 'pushed-nar'; fileName: string; fileHash: string; compression: string }
  | { kind: 'refused'; status: number; message: string };

/** The file name extensions Nix gives NARs, by compression method. */
export const NAR_EXTENSIONS: Readonly<Record<string, string>> = {
  '': 'none',
  '.xz': 'xz',
  '.bz2': 'bzip2',
  '.zst': 'zstd',
  '.br': 'br',
  '.gz': 'gzip',
  '.lz4': 'lz4',
  '.lz': 'lzip',
};

/** Longest URL looked at; Nix's are under 100 characters. */
export const MAX_URL_LENGTH = 512;

const B32 = '[0-9a-df-np-sv-z]';
const NARINFO_RE = new RegExp(`^/(${B32}{${HASH_LENGTH}})\\.narinfo$`);
const SERVED_NAR_RE = new RegExp(`^/nar/(${B32}{${HASH_LENGTH}})\\.nar$`);
const PUSHED_NAR_RE = new RegExp(`^/nar/((${B32}{52})\\.nar(\\.(?:xz|bz2|zst|br|gz|lz4|lz))?)$`);

const READ = new Set(['GET', 'HEAD']);

function refused(status: number, message: string): CacheRoute {
  return { kind: 'refused', status, message };
}

function methodNotAllowed(method: string, url: string, allowed: string): CacheRoute {
  return refused(405, `${method} is not allowed on ${url}; this binary cache accepts ${allowed} there`);
}

export function routeOf(method: string, rawUrl: string): CacheRoute {
  if (rawUrl.length > MAX_URL_LENGTH) return refused(414, `the URL is longer than ${MAX_URL_LENGTH} characters`);
  if (!rawUrl.startsWith('/')) return refused(400, 'the request target must be a path starting with /');
  if (/[?#%\\]/.test(rawUrl))
    return refused(400, 'the URL may not hold a query, fragment, percent escape or backslash');
  if (rawUrl.includes('//') || /(^|\/)\.\.?(\/|$)/.test(rawUrl))
    return refused(400, "the URL may not hold '//', '.' or '..' segments");
  const shown = rawUrl;
  if (rawUrl === '/nix-cache-info')
    return READ.has(method) ? { kind: 'cache-info' } : methodNotAllowed(method, shown, 'GET and HEAD');
  let m = NARINFO_RE.exec(rawUrl);
  if (m) {
    return READ.has(method) || method === 'PUT'
      ? { kind: 'narinfo', hash: m[1]! }
      : methodNotAllowed(method, shown, 'GET, HEAD and PUT');
  }
  m = SERVED_NAR_RE.exec(rawUrl);
  if (m)
    return READ.has(method) ? { kind: 'served-nar', hash: m[1]! } : methodNotAllowed(method, shown, 'GET and HEAD');
  m = PUSHED_NAR_RE.exec(rawUrl);
  if (m) {
    if (method !== 'PUT' && method !== 'HEAD') return methodNotAllowed(method, shown, 'HEAD and PUT');
    return { kind: 'pushed-nar', fileName: m[1]!, fileHash: m[2]!, compression: NAR_EXTENSIONS[m[3] ?? '']! };
  }
  if (method === 'PUT') {
    return refused(
      404,
      `${shown} is not something this binary cache stores: it accepts /<hash>.narinfo and /nar/<filehash>.nar[.xz|.zst|...] ` +
        '(build logs, listings and realisations are not kept)',
    );
  }
  return refused(404, `${shown} is not in this binary cache`);
}
