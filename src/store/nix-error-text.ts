/**
 * Reading Nix's stderr: the few lines a person needs, and what kind of
 * failure a `nix copy` was. Nix 2.8 has no machine-readable errors, so this is
 * pattern matching on its messages, kept in one pure place with a table test.
 */

const ANSI_RE = /\u001b\[[0-9;?]*[A-Za-z]/g;
const NOISE_RE = /^(copying \d+ paths?\.\.\.|copying path '|warning: ignoring untrusted substituter|\s*$)/;
const INTERESTING_RE =
  /(^error\b|^ssh:|\berror:|refused|denied|No such file|not found|timed out|Could not resolve|unreachable|No space left|Read-only file system)/i;

/** Nix's error lines (plus ssh's), de-duplicated and trimmed to `maxChars`; the last line when nothing matches. */
export function nixErrorSummary(stderr: string, maxChars = 400): string {
  const lines = stderr
    .replace(ANSI_RE, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => !NOISE_RE.test(l));
  const picked = [...new Set(lines.filter((l) => INTERESTING_RE.test(l)))];
  const text = (picked.length > 0 ? picked : lines.slice(-1)).join(' / ');
  return trimTo(text, maxChars);
}

export function trimTo(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : text.slice(0, Math.max(0, maxChars - 3)) + '...';
}

/**
 * - `path`: something about the paths themselves (not in the source, closure
 *   incomplete there, bad signature, corrupt NAR): copying them again from the
 *   same source will fail again; other paths of the batch may be fine.
 * - `source` / `destination`: that store could not be reached or used.
 * - `transient`: anything else, notably Nix 2.8's concurrent-copy bug
 *   ("not an absolute path: 'nix-archive-1'"); worth retrying.
 */
export type CopyFailureKind = 'path' | 'source' | 'destination' | 'transient';

const PATH_PROBLEMS = [
  /path '[^']*' is not valid/,
  /there is no substituter that can build it/,
  /don't know how to build these paths/,
  /lacks a valid signature/,
  /hash mismatch/i,
  /size mismatch importing path/,
  /does not exist in binary cache/,
  /is not a valid store path/,
  /NAR .* is corrupt|bad archive|input doesn't look like a Nix archive/,
  // A copy that would have to build (see NEVER_BUILD): nothing a retry can change.
  /unable to start any build/,
];
const DESTINATION_PROBLEMS = [/No space left on device/, /Read-only file system/, /database disk image is malformed/];
const CONNECTION_RE =
  /(cannot open connection to remote store '([^']*)'|cannot connect to socket at '([^']*)'|unable to download '([^']*)')/;

export function classifyCopyFailure(stderr: string, stores: { source: string; destination: string }): CopyFailureKind {
  const text = stderr.replace(ANSI_RE, '');
  if (DESTINATION_PROBLEMS.some((re) => re.test(text))) return 'destination';
  const conn = CONNECTION_RE.exec(text);
  if (conn) {
    const named = conn[2] ?? conn[3] ?? conn[4] ?? '';
    if (named && named.startsWith(stores.destination)) return 'destination';
    if (named && named.startsWith(stores.source)) return 'source';
    if (conn[4]) return 'source';
  }
  if (PATH_PROBLEMS.some((re) => re.test(text))) return 'path';
  return 'transient';
}
