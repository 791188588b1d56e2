import type { StoreUrl } from '../store/store-url';
import type { UpstreamTarget } from './upstream-target';
import type { HostPort } from './value-checks';

/**
 * The proxy's configuration: one typed object, defaults in one place, and
 * the reference for every setting. `loadConfig` builds it and parses each
 * value once into its typed form (addresses into HostPort, the upstream URL
 * into UpstreamTarget, store URLs into StoreUrl by src/store/store-url.ts);
 * nothing downstream parses or re-checks a setting. Durations are
 * milliseconds, sizes bytes. The same keys are accepted in the config file
 * (YAML or JSON), as environment variables NIX_REAPI_PROXY_<KEY> (upper
 * snake case, nested keys joined with '_') and as --kebab-case flags; the
 * text form of each is in config-keys.ts and `--help`.
 */
export interface Config {
  /** host:port the proxy listens on (port 0 picks a free port). */
  listen: HostPort;
  /** The REAPI server the proxy fronts, written grpc://host:port or grpcs://host:port. */
  upstream: UpstreamTarget;
  /** TLS to the upstream (grpcs:// only); file paths are absolute. */
  upstreamTls: {
    /** PEM file with the CA that signs the upstream's certificate (grpcs://). */
    ca?: string;
    /** PEM client certificate and key for mTLS to the upstream. */
    cert?: string;
    /** PEM private key of `cert`. */
    key?: string;
    /** TLS server name to verify instead of the upstream URL's host. */
    serverName?: string;
  };
  /** Listener TLS; plaintext when cert and key are unset. */
  tls: {
    /** PEM certificate chain served to clients. */
    cert?: string;
    /** PEM private key of `cert`. */
    key?: string;
    /** When set, clients must present a certificate signed by this CA (mTLS). */
    clientCa?: string;
  };
  /** Largest gRPC message the proxy accepts from a client; also caps advertised max_batch_total_size_bytes. */
  maxMessageBytes: number;
  /** HTTP/2 connections kept to the upstream. */
  upstreamConnections: number;
  /** How long connecting to the upstream may take before a call fails UNAVAILABLE. */
  connectTimeoutMs: number;
  keepalive: {
    /** Interval between HTTP/2 PINGs on idle connections (0 = off). */
    timeMs: number;
    /** A PING unanswered this long closes the connection. */
    timeoutMs: number;
  };
  /** On SIGTERM/SIGINT: how long in-flight calls may run before they are cancelled. */
  shutdownGraceMs: number;
  /** pino log level of the JSON lines on stdout. */
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** host:port for the Prometheus /metrics endpoint; unset = off. */
  metricsListen?: HostPort;
  /** File of accepted bearer tokens (TOKEN or NAME:TOKEN per line); when set, every call needs one. Re-read on change and on SIGHUP. */
  authTokensFile?: string;

  /**
   * The Nix binary cache the proxy serves (src/cache): clients push locally built paths with
   * `nix copy --to http(s)://...`, and may read the shared store through it. Off unless cacheListen is set.
   */
  cacheListen?: HostPort;
  /** The cache's URL as clients reach it (through a load balancer, TLS front...); used in error messages. */
  cachePublicUrl?: string;
  /** TLS of the cache listener; unset = the gRPC listener's tls.cert and tls.key. */
  cacheTls: {
    cert?: string;
    key?: string;
  };
  /** Where uploads are staged before Nix imports them; emptied at start. Default: <tmpdir>/nix-reapi-proxy-staging-<port>. */
  cacheStagingDir?: string;
  /** Disk the staging directory may use; uploads beyond it are refused 507. */
  cacheStagingBudgetBytes: number;
  /** Largest NAR file one upload may be. */
  cacheMaxNarBytes: number;
  /** An upload that sends nothing for this long is abandoned and its staged bytes removed. */
  cacheUploadIdleTimeoutMs: number;
  /** Staged NARs no narinfo has claimed for this long are removed. */
  cacheStagingTtlMs: number;
  /** Priority in /nix-cache-info (lower is preferred by Nix clients). */
  cachePriority: number;
  /** Client-certificate subjects (CN) allowed to push: NAME, or NAME=push-unsigned to push without signatures. */
  cachePushSubjects: string[];

  /** Nix store the executors see (chroot path, local, daemon, unix://, ssh-ng://host, ssh://host). Unset = pure pass-through. */
  sharedStore?: StoreUrl;
  /** Where missing paths are realised from, in order: local, daemon, file://, http(s)://, ssh(-ng)://, s3:// stores. */
  substituters: StoreUrl[];
  /** Public keys (NAME:BASE64) whose signatures make a substituter's paths trusted. */
  trustedPublicKeys: string[];
  /** When false, unsigned paths are accepted from substituters (--no-require-sigs). */
  requireSigs: boolean;
  /** Directory where executors see the store (e.g. an NFS mount); when set, wait until each path appears there. */
  visibleAt?: string;
  /** How long to wait for a path to appear under visibleAt before the Execute fails. */
  visibleTimeoutMs: number;
  /** Interval between QUEUED Operations sent to the client while an Execute is being prepared. */
  progressIntervalMs: number;
  /** Directory holding the nix, nix-store binaries; unset = found on PATH. */
  nixBinDir?: string;

  /** GC roots on the shared store (src/gc): roots unused this long are dropped by the sweep and by `prune`. */
  rootRetentionMs: number;
  /** Keep the total NAR size of rooted closures under this by dropping least recently used roots; unset = no budget. */
  rootedSizeBudgetBytes?: number;
  /** A root's last-use time (its mtime) is written at most once per path per this interval. */
  rootTouchIntervalMs: number;
  /** Interval between the proxy's own sweeps of unused roots (0 = no sweeps; run `prune` instead). */
  rootSweepIntervalMs: number;
  /** Directory for the proxy's GC roots, overriding the one derived from sharedStore; must lie inside the store host's gcroots. */
  gcRootsDir?: string;

  /** Bounds on what one Execute may cost. */
  limits: {
    /** Distinct store paths one action may reference. */
    storePathsPerAction: number;
    /** Directories and files in one input tree. */
    treeNodes: number;
    /** Nesting depth of one input tree. */
    treeDepth: number;
    /** Files larger than this are not scanned for store paths. */
    scanFileBytes: number;
    /** Total bytes of file contents scanned per Execute. */
    scanTotalBytes: number;
    /** Whole preparation of one Execute (tree walk, check, realise). */
    prepareTimeoutMs: number;
    /** Longest wait for the request message of a call the proxy answers itself. */
    requestReadTimeoutMs: number;
    /** Bytes of request messages being read at once across all calls answered by the proxy. */
    requestBufferBytes: number;
    /** Client connections the gRPC listener holds at once. */
    connections: number;
    /** Calls open at once on one client connection (HTTP/2 MAX_CONCURRENT_STREAMS). */
    streamsPerConnection: number;
    /** One Nix process. */
    nixCommandTimeoutMs: number;
    /** Realisations running at once (across all stores). */
    concurrentRealisations: number;
    /** Retries of a failed write into the shared store. */
    realiseRetries: number;
    /** Realisations one client (token name, certificate subject or address) may have running at once; unset = no limit. */
    clientConcurrentRealisations?: number;
    /** Executes prepared at once, overall and per client. */
    concurrentPreparations: number;
    clientConcurrentPreparations?: number;
    /** Bytes of store paths realised for one client per sliding hour; unset = no limit. */
    clientRealisedBytesPerHour?: number;
    /** Bytes one client may upload to the binary cache per sliding hour (reserved when an upload starts); unset = no limit. */
    clientPushedBytesPerHour?: number;
  };
  /** In-memory caches. */
  cache: {
    /** Entries in the digest -> store paths memo (directories and files). */
    memoEntries: number;
    /** Heap bytes the input-tree memo (directory and file digest -> store paths) may hold. */
    treeMemoBytes: number;
    /** Heap bytes the action memo (action digest -> store paths and where they were found) may hold. */
    actionMemoBytes: number;
    /** Heap bytes the cache of paths known valid on the shared store may hold. */
    validityBytes: number;
    /** How long a path known valid is trusted without asking the store. */
    validityTtlMs: number;
  };
}

export const DEFAULTS: Config = {
  listen: { host: '127.0.0.1', port: 8980 },
  upstream: {
    url: 'grpc://127.0.0.1:8981',
    tls: false,
    host: '127.0.0.1',
    port: 8981,
    authority: '127.0.0.1:8981',
    origin: 'http://127.0.0.1:8981',
  },
  /** TLS to the upstream (grpcs:// only); file paths are absolute. */
  upstreamTls: {},
  tls: {},
  maxMessageBytes: 4 * 1024 * 1024,
  upstreamConnections: 2,
  connectTimeoutMs: 5_000,
  keepalive: { timeMs: 30_000, timeoutMs: 10_000 },
  shutdownGraceMs: 30_000,
  logLevel: 'info',
  cacheTls: {},
  cacheStagingBudgetBytes: 16 * 1024 ** 3,
  cacheMaxNarBytes: 8 * 1024 ** 3,
  cacheUploadIdleTimeoutMs: 60_000,
  cacheStagingTtlMs: 10 * 60_000,
  cachePriority: 40,
  cachePushSubjects: [],
  substituters: [],
  trustedPublicKeys: [],
  requireSigs: true,
  visibleTimeoutMs: 60_000,
  progressIntervalMs: 10_000,
  rootRetentionMs: 14 * 86_400_000,
  rootTouchIntervalMs: 3_600_000,
  rootSweepIntervalMs: 3_600_000,
  limits: {
    storePathsPerAction: 10_000,
    treeNodes: 1_000_000,
    treeDepth: 256,
    scanFileBytes: 1024 * 1024,
    scanTotalBytes: 256 * 1024 * 1024,
    prepareTimeoutMs: 30 * 60_000,
    requestReadTimeoutMs: 60_000,
    requestBufferBytes: 256 * 1024 * 1024,
    concurrentPreparations: 1_000,
    connections: 10_000,
    streamsPerConnection: 10_000,
    nixCommandTimeoutMs: 10 * 60_000,
    concurrentRealisations: 4,
    realiseRetries: 3,
  },
  cache: {
    memoEntries: 200_000,
    treeMemoBytes: 64 * 1024 * 1024,
    actionMemoBytes: 32 * 1024 * 1024,
    validityBytes: 16 * 1024 * 1024,
    validityTtlMs: 5 * 60_000,
  },
};
