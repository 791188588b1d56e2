/**
 * Nix store URLs the proxy hands to Nix: the shared store the executors mount
 * and the substituters paths are copied from. Parsing is strict because each
 * URL becomes one argument of a Nix command, and a mistake that Nix would
 * accept silently is expensive: a typo in a file:// cache creates an empty
 * cache, a wrong chroot path creates an empty store nobody mounts, and an ssh
 * host starting with '-' would reach ssh as an option. Pure: no I/O.
 */

export type StoreKind = 'chroot' | 'local' | 'daemon' | 'ssh' | 'ssh-ng' | 'file' | 'http' | 's3';

export interface StoreUrl {
  kind: StoreKind;
  /** The URL exactly as given; passed to Nix as one argument and shown in messages. */
  url: string;
  /**
   * A directory on this host that must already exist before Nix touches the
   * store (Nix would otherwise create an empty store or cache there): the
   * chroot root, `local?root=`, or a file:// cache directory.
   */
  localDir?: string;
  /** For ssh and ssh-ng: `[user@]host`. */
  host?: string;
  /** Store settings from the query string, decoded. */
  params: Readonly<Record<string, string>>;
}

export type StoreUrlResult = { ok: true; store: StoreUrl } | { ok: false; problem: string };

const MAX_URL_LENGTH = 2048;
const CONTROL_OR_SPACE_RE = /[\s\u0000-\u001f\u007f]/;
/** Host names and IPv4 addresses; no label starts with '-', so ssh never mistakes a host for an option. */
const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9][A-Za-z0-9_-]{0,62})*$/;
const SSH_USER_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const PARAM_KEY_RE = /^[a-z][a-z0-9-]{0,63}$/;
const PARAM_VALUE_RE = /^[A-Za-z0-9._~%\/:=+,@-]{0,1024}$/;
const S3_BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Store settings Nix 2.8 accepts per store type; anything else is most likely a typo. */
const COMMON_PARAMS = ['priority', 'want-mass-query', 'path-info-cache-size', 'trusted', 'system-features'];
const PARAMS: Record<StoreKind, readonly string[]> = {
  chroot: [],
  local: ['root', 'store', 'state', 'log', 'real', 'require-sigs'],
  daemon: ['max-connections', 'max-connection-age', 'path'],
  ssh: ['remote-store', 'remote-program', 'ssh-key', 'compress', 'max-connections', 'base64-ssh-public-host-key'],
  'ssh-ng': ['remote-store', 'remote-program', 'ssh-key', 'compress', 'max-connections', 'base64-ssh-public-host-key'],
  file: [
    'compression',
    'compression-level',
    'parallel-compression',
    'write-nar-listing',
    'write-debug-info',
    'index-debug-info',
    'secret-key',
    'local-nar-cache',
  ],
  http: [
    'compression',
    'compression-level',
    'parallel-compression',
    'write-nar-listing',
    'secret-key',
    'local-nar-cache',
  ],
  s3: [
    'region',
    'endpoint',
    'profile',
    'scheme',
    'compression',
    'compression-level',
    'parallel-compression',
    'write-nar-listing',
    'secret-key',
    'multipart-upload',
    'buffer-size',
    'narinfo-compression',
    'ls-compression',
    'log-compression',
  ],
};
const LOCAL_PATH_PARAMS = new Set([
  'root',
  'store',
  'state',
  'log',
  'real',
  'remote-store',
  'ssh-key',
  'secret-key',
  'local-nar-cache',
]);

const SHARED_FORMS =
  'an absolute directory (chroot store), local, daemon, unix:///path/to/socket, ssh://[user@]host or ssh-ng://[user@]host';
const SUBSTITUTER_FORMS =
  'local, daemon, an absolute directory, file:///path, http(s)://host/path, ssh://[user@]host, ssh-ng://[user@]host or s3://bucket';

/** The shared store the executors mount. */
export function parseSharedStoreUrl(input: string): StoreUrlResult {
  const parsed = parseAny(input, SHARED_FORMS);
  if (!parsed.ok) return parsed;
  if (['file', 'http', 's3'].includes(parsed.store.kind)) {
    return {
      ok: false,
      problem: `${parsed.store.kind} stores are binary caches, which executors cannot run programs from; use ${SHARED_FORMS}`,
    };
  }
  return parsed;
}

/** A source of store paths; `local` means this host's own store. */
export function parseSubstituterUrl(input: string): StoreUrlResult {
  return parseAny(input, SUBSTITUTER_FORMS);
}

function fail(problem: string): StoreUrlResult {
  return { ok: false, problem };
}

function checkAbsoluteDir(path: string, what: string): string | undefined {
  if (!path.startsWith('/')) return `${what} must be an absolute path`;
  if (path.includes('//')) return `${what} must not contain '//'`;
  const trimmed = path.endsWith('/') ? path.slice(0, -1) : path;
  if (trimmed === '') return `${what} is the root directory; use local (or daemon) for this host's own store`;
  if (trimmed.split('/').some((s) => s === '.' || s === '..'))
    return `${what} contains '.' or '..'; write it out in full`;
  if (!/^[A-Za-z0-9._+@%=,:~\/-]+$/.test(trimmed))
    return `${what} contains characters other than letters, digits and ._+@%=,:~/-`;
  return undefined;
}

function stripSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function parseQuery(
  kind: StoreKind,
  query: string | undefined,
): { params: Record<string, string> } | { problem: string } {
  const params: Record<string, string> = {};
  if (query === undefined) return { params };
  if (query === '') return { problem: 'has an empty query string' };
  const allowed = new Set([...COMMON_PARAMS, ...PARAMS[kind]]);
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    if (!PARAM_KEY_RE.test(key)) return { problem: `has a malformed setting name ${JSON.stringify(key)}` };
    if (!allowed.has(key)) {
      return {
        problem: `has setting ${key}, which ${kind} stores do not take (known: ${[...allowed].sort().join(', ')})`,
      };
    }
    if (key in params) return { problem: `sets ${key} twice` };
    if (!PARAM_VALUE_RE.test(raw)) return { problem: `has a malformed value for ${key}` };
    let value: string;
    try {
      value = decodeURIComponent(raw);
    } catch {
      return { problem: `has a malformed percent-encoding in ${key}` };
    }
    if (CONTROL_OR_SPACE_RE.test(value)) return { problem: `has control characters or spaces in ${key}` };
    if (LOCAL_PATH_PARAMS.has(key)) {
      const bad = checkAbsoluteDir(value, `setting ${key}`);
      if (bad) return { problem: bad };
    }
    params[key] = value;
  }
  return { params };
}

function splitQuery(rest: string): [string, string | undefined] {
  const q = rest.indexOf('?');
  return q === -1 ? [rest, undefined] : [rest.slice(0, q), rest.slice(q + 1)];
}

function withQuery(
  kind: StoreKind,
  url: string,
  query: string | undefined,
  extra: Partial<StoreUrl> = {},
): StoreUrlResult {
  const q = parseQuery(kind, query);
  if ('problem' in q) return fail(q.problem);
  return { ok: true, store: { kind, url, params: q.params, ...extra } };
}

function parseAny(input: string, forms: string): StoreUrlResult {
  if (input.length === 0) return fail(`is empty (accepted: ${forms})`);
  if (input.length > MAX_URL_LENGTH) return fail(`is longer than ${MAX_URL_LENGTH} characters`);
  if (CONTROL_OR_SPACE_RE.test(input)) return fail(`contains spaces or control characters (accepted: ${forms})`);
  if (input.includes('#')) return fail('contains a fragment (#)');

  if (input.startsWith('/')) {
    const [path, query] = splitQuery(input);
    if (query !== undefined) return fail(`a chroot store takes no settings; write local?root=${path}&... instead`);
    const bad = checkAbsoluteDir(path, 'the store directory');
    if (bad) return fail(bad);
    return { ok: true, store: { kind: 'chroot', url: input, localDir: stripSlash(path), params: {} } };
  }

  const scheme = /^([a-z][a-z0-9+.-]*)(:\/\/)?/.exec(input);
  const name = scheme?.[1];
  if (!scheme?.[2]) {
    const [word, query] = splitQuery(input);
    if (word === 'local') {
      const r = withQuery('local', input, query);
      if (r.ok && r.store.params.root)
        return { ok: true, store: { ...r.store, localDir: stripSlash(r.store.params.root) } };
      return r;
    }
    if (word === 'daemon') return withQuery('daemon', input, query);
    return fail(`is not a store URL (accepted: ${forms})`);
  }
  const rest = input.slice(scheme[0].length);
  switch (name) {
    case 'unix': {
      const [path, query] = splitQuery(rest);
      const bad = checkAbsoluteDir(path, 'the daemon socket');
      if (bad) return fail(`must be unix:///absolute/path/to/socket: ${bad}`);
      return withQuery('daemon', input, query);
    }
    case 'ssh':
    case 'ssh-ng':
      return parseSsh(name, input, rest);
    case 'file': {
      const [path, query] = splitQuery(rest);
      if (!path.startsWith('/')) return fail('must be file:///absolute/path (three slashes)');
      const bad = checkAbsoluteDir(path, 'the cache directory');
      if (bad) return fail(bad);
      return withQuery('file', input, query, { localDir: stripSlash(path) });
    }
    case 'http':
    case 'https':
      return parseHttp(input, rest);
    case 's3': {
      const [bucket, query] = splitQuery(rest);
      if (!S3_BUCKET_RE.test(bucket))
        return fail('must be s3://bucket-name (3-63 lower-case letters, digits, dots, dashes; no path)');
      return withQuery('s3', input, query);
    }
    default:
      return fail(`has unsupported scheme ${name} (accepted: ${forms})`);
  }
}

function parseSsh(kind: 'ssh' | 'ssh-ng', input: string, rest: string): StoreUrlResult {
  const usage = `must be ${kind}://[user@]host`;
  const [authority, query] = splitQuery(rest);
  if (authority.includes('/')) return fail(`${usage}: no path; pick a store on the far side with ?remote-store=/path`);
  const at = authority.lastIndexOf('@');
  const user = at === -1 ? undefined : authority.slice(0, at);
  const host = at === -1 ? authority : authority.slice(at + 1);
  if (user !== undefined && !SSH_USER_RE.test(user)) {
    return fail(`${usage}: the user name must be letters, digits and ._- (and not start with '-'); no password`);
  }
  if (/:\d*$/.test(host)) {
    return fail(
      `${usage}: Nix 2.8 ssh store URLs take no port; use a Host entry in ~/.ssh/config or NIX_SSHOPTS="-p PORT"`,
    );
  }
  if (!HOST_RE.test(host)) return fail(`${usage}: ${JSON.stringify(host)} is not a host name or IPv4 address`);
  return withQuery(kind, input, query, { host: authority });
}

function parseHttp(input: string, rest: string): StoreUrlResult {
  const [beforeQuery, query] = splitQuery(rest);
  const slash = beforeQuery.indexOf('/');
  const authority = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash);
  const path = slash === -1 ? '' : beforeQuery.slice(slash);
  if (authority.includes('@')) return fail('must not carry credentials; put them in a netrc file (netrc-file setting)');
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m || !HOST_RE.test(m[1]!)) return fail('must be http(s)://host[:port][/path]');
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535))
    return fail(`has port ${m[2]}, outside 1..65535`);
  if (path && !/^[A-Za-z0-9._~%\/+=,:@-]*$/.test(path))
    return fail('has characters in its path that need percent-encoding');
  if (path.split('/').some((s) => s === '..' || s === '.')) return fail("has '.' or '..' in its path");
  return withQuery('http', input, query, { host: m[1]! });
}
