import { parseSharedStoreUrl, parseSubstituterUrl, type StoreUrl, type StoreUrlResult } from '../store/store-url';
import type { Config } from './config';
import type { UpstreamTarget } from './upstream-target';
import {
  checkAbsolutePath,
  checkCachePublicUrl,
  checkPushSubject,
  checkTrustedPublicKey,
  formatHostPort,
  parseListenAddress,
  type HostPort,
  parseUpstreamTarget,
} from './value-checks';

/**
 * The one table of configuration keys. The flag parser, the environment
 * reader, the config-file reader, validation and --help are all derived from
 * it, so they cannot drift apart. Pure: no I/O.
 */

/** Values parsed from one setting's text: leaves of Config, like strings and numbers. */
type ParsedValue = HostPort | UpstreamTarget | StoreUrl;

/** Every leaf path of Config ('limits.treeDepth'); arrays and parsed values are leaves. */
type LeafPath<T, Prefix extends string = ''> = {
  [K in keyof T & string]-?: NonNullable<T[K]> extends readonly unknown[] | ParsedValue
    ? `${Prefix}${K}`
    : NonNullable<T[K]> extends object
      ? LeafPath<NonNullable<T[K]>, `${Prefix}${K}.`>
      : `${Prefix}${K}`;
}[keyof T & string];

export type ConfigPath = LeafPath<Config>;

export type KeyKind = 'string' | 'file' | 'duration' | 'size' | 'integer' | 'boolean' | 'list' | 'choice';

export interface KeySpec {
  readonly path: ConfigPath;
  readonly kind: KeyKind;
  /** One line for --help. */
  readonly description: string;
  /** Placeholder shown in --help after the flag. */
  readonly valueName: string;
  /** May be left unset (no default). */
  readonly optional?: boolean;
  /** Bounds for durations (ms), sizes (bytes) and integers, inclusive. */
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** Check of a string value or of each list item; returns why it is wrong. */
  readonly check?: (value: string) => string | undefined;
  /**
   * Parser of a string value or of each list item into its typed form (what
   * the Config holds), or why the text is not one. Keys with a parser have
   * no `check`: the parser is the one place the text is judged.
   */
  readonly parse?: (value: string) => { value: unknown } | { error: string };
  /** The text a user would write for a parsed value (for --help and the start-up log). */
  readonly show?: (value: never) => string;
  /** Flag name when it is not derived from the path (lists take a singular, repeatable flag). */
  readonly flagOverride?: string;
}

export interface ConfigKey extends KeySpec {
  /** Flag name without dashes, e.g. 'connect-timeout'. Booleans also accept 'no-<flag>'. */
  readonly flag: string;
  /** Environment variable, e.g. 'NIX_REAPI_PROXY_CONNECT_TIMEOUT_MS'. */
  readonly env: string;
}

export const ENV_PREFIX = 'NIX_REAPI_PROXY_';
/** Names the config file; not a Config key. */
export const CONFIG_FILE_ENV = `${ENV_PREFIX}CONFIG`;

/** Node timers fire at once beyond 2^31-1 ms (about 24.8 days), so durations used as timers stop there. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Retention is compared with timestamps, never used as a timer: ten years is plenty. */
const MAX_RETENTION_MS = 3650 * 86_400_000;
/** grpc-js takes message limits as 32-bit integers. */
const MAX_MESSAGE_BYTES = 2 ** 31 - 1;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function storeParser(
  parse: (text: string) => StoreUrlResult,
): (text: string) => { value: StoreUrl } | { error: string } {
  return (text) => {
    const parsed = parse(text);
    return parsed.ok ? { value: parsed.store } : { error: parsed.problem };
  };
}

const showStore = (store: StoreUrl): string => store.url;

const SPECS = [
  {
    path: 'listen',
    kind: 'string',
    valueName: 'HOST:PORT',
    parse: parseListenAddress,
    show: formatHostPort,
    description: 'Address the proxy listens on (port 0 picks a free port).',
  },
  {
    path: 'upstream',
    kind: 'string',
    valueName: 'URL',
    parse: parseUpstreamTarget,
    show: (t: UpstreamTarget) => t.url,
    description: 'REAPI server the proxy fronts: grpc://HOST:PORT or grpcs://HOST:PORT.',
  },
  {
    path: 'upstreamTls.ca',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: "PEM CA bundle that signs the upstream's certificate (grpcs://; default: system roots).",
  },
  {
    path: 'upstreamTls.cert',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM client certificate for mTLS to the upstream (needs --upstream-tls-key).',
  },
  {
    path: 'upstreamTls.key',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM private key of --upstream-tls-cert.',
  },
  {
    path: 'upstreamTls.serverName',
    kind: 'string',
    valueName: 'NAME',
    optional: true,
    description: "Name to verify in the upstream's certificate instead of the URL's host.",
  },
  {
    path: 'tls.cert',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM certificate the proxy serves; with --tls-key turns on TLS for clients.',
  },
  { path: 'tls.key', kind: 'file', valueName: 'FILE', optional: true, description: 'PEM private key of --tls-cert.' },
  {
    path: 'tls.clientCa',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM CA; when set, clients must present a certificate it signed (mTLS).',
  },
  {
    path: 'maxMessageBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024,
    max: MAX_MESSAGE_BYTES,
    description: 'Largest gRPC message accepted from clients; also caps the advertised max_batch_total_size_bytes.',
  },
  {
    path: 'upstreamConnections',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    max: 64,
    description: 'HTTP/2 connections kept open to the upstream.',
  },
  {
    path: 'connectTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'How long connecting to the upstream may take before a call fails UNAVAILABLE.',
  },
  {
    path: 'keepalive.timeMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 0,
    max: MAX_TIMER_MS,
    description: 'Interval between HTTP/2 PINGs on idle connections (0 = off).',
  },
  {
    path: 'keepalive.timeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'A PING unanswered this long closes the connection.',
  },
  {
    path: 'shutdownGraceMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 0,
    max: MAX_TIMER_MS,
    description: 'On SIGTERM/SIGINT, how long in-flight calls may still run before they are cancelled.',
  },
  {
    path: 'logLevel',
    kind: 'choice',
    valueName: 'LEVEL',
    choices: LOG_LEVELS,
    description: `Log level: ${LOG_LEVELS.join(', ')}.`,
  },
  {
    path: 'metricsListen',
    kind: 'string',
    valueName: 'HOST:PORT',
    optional: true,
    parse: parseListenAddress,
    show: formatHostPort,
    description: 'Address of the Prometheus /metrics endpoint (unset = off).',
  },
  {
    path: 'authTokensFile',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description:
      'Bearer tokens clients must send (authorization: Bearer TOKEN), one per line as TOKEN or NAME:TOKEN; re-read when it changes and on SIGHUP (unset = no tokens needed).',
  },
  {
    path: 'cacheListen',
    kind: 'string',
    valueName: 'HOST:PORT',
    optional: true,
    parse: parseListenAddress,
    show: formatHostPort,
    description:
      'Address of the Nix binary cache that clients push locally built paths to with nix copy (unset = off).',
  },
  {
    path: 'cachePublicUrl',
    kind: 'string',
    valueName: 'URL',
    optional: true,
    check: checkCachePublicUrl,
    description: "The binary cache's URL as clients reach it (shown in the nix copy command of a missing-path error).",
  },
  {
    path: 'cacheTls.cert',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM certificate of the binary cache listener (default: --tls-cert).',
  },
  {
    path: 'cacheTls.key',
    kind: 'file',
    valueName: 'FILE',
    optional: true,
    description: 'PEM private key of --cache-tls-cert (default: --tls-key).',
  },
  {
    path: 'cacheStagingDir',
    kind: 'string',
    valueName: 'DIR',
    optional: true,
    check: checkAbsolutePath,
    description:
      'Directory uploads are staged in before Nix imports them; emptied at start (default: <tmpdir>/nix-reapi-proxy-staging-<port>).',
  },
  {
    path: 'cacheStagingBudgetBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024 * 1024,
    flagOverride: 'cache-staging-budget',
    description: 'Disk the staging directory may use; uploads beyond it are refused 507.',
  },
  {
    path: 'cacheMaxNarBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024,
    flagOverride: 'cache-max-nar-size',
    description: 'Largest NAR file one upload may be.',
  },
  {
    path: 'cacheUploadIdleTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 100,
    max: MAX_TIMER_MS,
    description: 'An upload that sends nothing for this long is abandoned and its staged bytes removed.',
  },
  {
    path: 'cacheStagingTtlMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1_000,
    max: MAX_TIMER_MS,
    description: 'Staged NARs that no accepted narinfo claimed within this time are removed.',
  },
  {
    path: 'cachePriority',
    kind: 'integer',
    valueName: 'N',
    min: 0,
    max: 10_000,
    description: 'Priority the binary cache announces in /nix-cache-info (Nix prefers lower).',
  },
  {
    path: 'cachePushSubjects',
    kind: 'list',
    valueName: 'SUBJECT',
    flagOverride: 'cache-push-subject',
    check: checkPushSubject,
    description:
      'Client-certificate subject (CN) allowed to push to the binary cache, as NAME or NAME=push-unsigned (repeatable).',
  },
  {
    path: 'sharedStore',
    kind: 'string',
    valueName: 'STORE',
    optional: true,
    parse: storeParser(parseSharedStoreUrl),
    show: showStore,
    description:
      'Nix store the executors see: /abs/dir (chroot store), local, daemon, ssh://host, ssh-ng://host, unix:///socket. Unset = pure pass-through.',
  },
  {
    path: 'substituters',
    kind: 'list',
    valueName: 'URL',
    flagOverride: 'substituter',
    parse: storeParser(parseSubstituterUrl),
    show: showStore,
    description:
      'Where missing store paths come from, tried in order (repeatable): local, daemon, file://, http(s)://, ssh://, ssh-ng://, s3://.',
  },
  {
    path: 'trustedPublicKeys',
    kind: 'list',
    valueName: 'KEY',
    flagOverride: 'trusted-public-key',
    check: checkTrustedPublicKey,
    description: 'Public key that signs substituted paths, as NAME:BASE64 (repeatable).',
  },
  {
    path: 'requireSigs',
    kind: 'boolean',
    valueName: '',
    description: 'Refuse unsigned paths from substituters (--no-require-sigs accepts them).',
  },
  {
    path: 'visibleAt',
    kind: 'string',
    valueName: 'DIR',
    optional: true,
    check: checkAbsolutePath,
    description: 'Directory where executors see the store (e.g. an NFS mount); wait until each path appears there.',
  },
  {
    path: 'visibleTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'How long to wait for a path to appear under --visible-at.',
  },
  {
    path: 'progressIntervalMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 100,
    max: MAX_TIMER_MS,
    description: 'Interval between QUEUED Operations sent to a client while its Execute is being prepared.',
  },
  {
    path: 'nixBinDir',
    kind: 'string',
    valueName: 'DIR',
    optional: true,
    check: checkAbsolutePath,
    description: 'Directory holding the nix and nix-store binaries (unset = found on PATH).',
  },
  {
    path: 'rootRetentionMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 0,
    max: MAX_RETENTION_MS,
    description: 'GC roots of store paths no action has used for this long are dropped (by the sweep and by prune).',
  },
  {
    path: 'rootedSizeBudgetBytes',
    kind: 'size',
    valueName: 'SIZE',
    optional: true,
    min: 1,
    flagOverride: 'rooted-size-budget',
    description:
      'Keep the rooted closures under this total size by dropping least recently used roots first (unset = no budget).',
  },
  {
    path: 'rootTouchIntervalMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1_000,
    max: MAX_TIMER_MS,
    description: "A root's last-use time is written at most once per path per this interval.",
  },
  {
    path: 'rootSweepIntervalMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 0,
    max: MAX_TIMER_MS,
    description: 'Interval between sweeps that drop unused GC roots (0 = never; run the prune command instead).',
  },
  {
    path: 'gcRootsDir',
    kind: 'string',
    valueName: 'DIR',
    optional: true,
    check: checkAbsolutePath,
    description:
      "Directory for the proxy's GC roots (default: nix-reapi-proxy/ in the shared store's gcroots); must lie inside the store host's gcroots.",
  },
  {
    path: 'limits.storePathsPerAction',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: 'Most distinct store paths one action may reference.',
  },
  {
    path: 'limits.treeNodes',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: "Most files, directories and symlinks in one action's input tree.",
  },
  {
    path: 'limits.treeDepth',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: "Deepest directory nesting in one action's input tree.",
  },
  {
    path: 'limits.scanFileBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1,
    description: 'Input files larger than this are not scanned for store paths.',
  },
  {
    path: 'limits.scanTotalBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1,
    description: 'Total bytes of file contents scanned per Execute.',
  },
  {
    path: 'limits.requestReadTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description:
      'Longest wait for the request message of a call the proxy answers itself (Execute, WaitExecution, Health); then DEADLINE_EXCEEDED.',
  },
  {
    path: 'limits.prepareTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'Longest preparation of one Execute (tree walk, store check, realisation).',
  },
  {
    path: 'limits.nixCommandTimeoutMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'Longest run of one Nix process.',
  },
  {
    path: 'limits.requestBufferBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024 * 1024,
    flagOverride: 'limits-request-buffer',
    description:
      'Bytes of request messages being read at once across all calls the proxy answers itself; beyond it RESOURCE_EXHAUSTED.',
  },
  {
    path: 'limits.connections',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: 'Client connections the gRPC listener holds at once; more are refused.',
  },
  {
    path: 'limits.streamsPerConnection',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    max: 2 ** 31 - 1,
    description: 'Calls one client connection may have open at once (HTTP/2 MAX_CONCURRENT_STREAMS).',
  },
  {
    path: 'limits.concurrentRealisations',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: 'Realisations running at once, across all stores.',
  },
  {
    path: 'limits.realiseRetries',
    kind: 'integer',
    valueName: 'N',
    min: 0,
    description: 'Retries of a failed write into the shared store (0 = no retry).',
  },
  {
    path: 'limits.concurrentPreparations',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: 'Executes prepared at once (reading inputs, ensuring store paths); beyond it RESOURCE_EXHAUSTED.',
  },
  {
    path: 'limits.clientConcurrentPreparations',
    kind: 'integer',
    valueName: 'N',
    optional: true,
    min: 1,
    description: 'Executes one client may have prepared at once; unset: no per-client limit.',
  },
  {
    path: 'limits.clientConcurrentRealisations',
    kind: 'integer',
    valueName: 'N',
    optional: true,
    min: 1,
    description:
      'Realisations one client (token name, certificate subject, or address) may have running at once; more are refused RESOURCE_EXHAUSTED (unset = no limit).',
  },
  {
    path: 'limits.clientRealisedBytesPerHour',
    kind: 'size',
    valueName: 'SIZE',
    optional: true,
    min: 1,
    description:
      'Bytes of store paths realised for one client per sliding hour; past it, realisations are refused RESOURCE_EXHAUSTED (unset = no limit).',
  },
  {
    path: 'limits.clientPushedBytesPerHour',
    kind: 'size',
    valueName: 'SIZE',
    optional: true,
    min: 1,
    description:
      'Bytes one client may upload to the binary cache per sliding hour, reserved when an upload starts; past it, uploads are refused 429 (unset = no limit).',
  },
  {
    path: 'cache.memoEntries',
    kind: 'integer',
    valueName: 'N',
    min: 1,
    description: 'Entries in the digest -> store paths memo.',
  },
  {
    path: 'cache.treeMemoBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024,
    description: 'Heap bytes the input-tree memo (directory and file digest -> store paths) may hold.',
  },
  {
    path: 'cache.actionMemoBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024,
    description: 'Heap bytes the action memo (action digest -> store paths and where found) may hold.',
  },
  {
    path: 'cache.validityBytes',
    kind: 'size',
    valueName: 'SIZE',
    min: 1024,
    description: 'Heap bytes the cache of paths known valid on the shared store may hold.',
  },
  {
    path: 'cache.validityTtlMs',
    kind: 'duration',
    valueName: 'DURATION',
    min: 1,
    max: MAX_TIMER_MS,
    description: 'How long a path known valid on the shared store is trusted without asking again.',
  },
] as const satisfies readonly KeySpec[];

// Compile-time proof that every Config leaf has a row: adding a key to Config without one fails tsc.
type MissingRows = Exclude<ConfigPath, (typeof SPECS)[number]['path']>;
const everyKeyHasARow: [MissingRows] extends [never] ? true : MissingRows = true;
void everyKeyHasARow;

function camelWords(path: string): string[] {
  return path
    .split('.')
    .flatMap((segment) => segment.split(/(?=[A-Z])/))
    .map((w) => w.toLowerCase());
}

/** 'keepalive.timeMs' -> 'keepalive-time' (durations drop their Ms suffix). */
function flagOf(spec: KeySpec): string {
  if (spec.flagOverride) return spec.flagOverride;
  const words = camelWords(spec.path);
  if (spec.kind === 'duration' && words[words.length - 1] === 'ms') words.pop();
  return words.join('-');
}

/** 'keepalive.timeMs' -> 'NIX_REAPI_PROXY_KEEPALIVE_TIME_MS'. */
function envOf(spec: KeySpec): string {
  return ENV_PREFIX + camelWords(spec.path).join('_').toUpperCase();
}

export const CONFIG_KEYS: readonly ConfigKey[] = SPECS.map((spec) => ({
  ...spec,
  flag: flagOf(spec),
  env: envOf(spec),
}));

export const KEY_BY_PATH: ReadonlyMap<string, ConfigKey> = new Map(CONFIG_KEYS.map((key) => [key.path, key]));

/** Reads a dotted path from a config-shaped object. */
export function getPath(obj: unknown, path: string): unknown {
  let current: unknown = obj;
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

/** Writes a dotted path, creating intermediate objects; `undefined` deletes the leaf. */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const segments = path.split('.');
  let current = obj;
  for (const segment of segments.slice(0, -1)) {
    const next = current[segment];
    if (next === null || typeof next !== 'object') current[segment] = {};
    current = current[segment] as Record<string, unknown>;
  }
  const leaf = segments[segments.length - 1]!;
  if (value === undefined) delete current[leaf];
  else current[leaf] = value;
}
