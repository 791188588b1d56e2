/**
 * Turns configuration into the proxy's GC-roots side: where roots live (or a
 * clear start-up message saying they are off, and why), the per-process
 * lease holder and the periodic sweep.
 *
 * How src/main.ts composes it:
 *   const roots = createGcRoots(config, { logger, metrics });
 *   const ensurer = createClosureEnsurer(config, { logger, leases: roots });
 *   // Execute path: const lease = await roots.acquire(paths) before ensure,
 *   // lease.release() when the action has finished.
 *   // shutdown, after in-flight actions ended: await roots.close();
 *
 * The start-up check is synchronous (it runs once, at composition): it
 * creates the roots directory when the store's directory is there and checks
 * it is writable. Roots are off only when they cannot work at all (a remote
 * store with no gcRootsDir, a directory the proxy may not write); a store
 * directory that is merely missing now (not yet mounted) leaves them on, and
 * the directory is made when the store appears.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { formatDuration } from '../config/duration';
import { ProxyError } from '../errors';
import { NO_METRICS, type Metrics } from '../metrics/metrics';
import { Code } from '../reapi/grpc-status';
import type { ExistsProbe } from '../store/local-dir-check';
import { configuredNixRunner, type NixRunner } from '../store/nix-command';
import { Reasons } from '../store/shared-store';
import type { StoreUrl } from '../store/store-url';
import { GcRoots } from './gc-roots';
import { LEASE_REFRESH_MS, MAX_HELD_PATHS, NOT_VALID_GRACE_MS, rootTimings } from './gc-roots-settings';
import { replicaId } from './lease-file';
import { NO_LEASES, type PathLease, type PathLeases } from './path-leases';
import { pruneRoots } from './prune-roots';
import { LEASES_SUBDIR } from './root-entries';
import { nodeRootFs, type RootFs } from './root-fs';
import { rootLocation, type RootLocation } from './root-location';
import { RootSweeper, type SweepOutcome } from './root-sweeper';

export interface GcRootsDeps {
  logger: Logger;
  metrics?: Metrics;
  /** Replaces the Nix process runner (tests). */
  runner?: NixRunner;
  /** Replaces the filesystem (tests count calls through it); the start-up check always uses the real one. */
  fs?: RootFs;
  now?: () => number;
  /** This process's id among replicas; default host-pid-random. */
  replica?: string;
  exists?: ExistsProbe;
  /** Told about every sweep: the hook for a last-sweep metric. */
  onSweep?: (outcome: SweepOutcome) => void;
  /** Overrides of internal timings (tests). */
  leaseRefreshMs?: number;
  lingerMs?: number;
}

/** The proxy's GC roots. `acquire` per PathLeases; a no-op when roots are off. */
export interface OwnedGcRoots extends PathLeases {
  readonly location: RootLocation;
  /** Paths this process holds right now. */
  heldPaths(): Set<string>;
  /** Runs a sweep now (undefined when roots are off). */
  sweep(): Promise<SweepOutcome | undefined>;
  /** Stops the sweep and lease refresh and removes this process's lease. */
  close(): Promise<void>;
}

function off(location: RootLocation): OwnedGcRoots {
  return {
    location,
    acquire: (paths: readonly string[]): Promise<PathLease> => NO_LEASES.acquire(paths),
    heldPaths: () => new Set(),
    sweep: async () => undefined,
    close: async () => {},
  };
}

function errText(err: unknown): string {
  const code =
    typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** Creates the directory when its store is there; returns why roots cannot work, or undefined. */
function prepareDir(location: Extract<RootLocation, { on: true }>, logger: Logger): string | undefined {
  try {
    statSync(location.mustExist);
  } catch {
    logger.warn(
      { dir: location.dir, missing: location.mustExist },
      'GC roots: the store directory is missing now; the roots directory will be made when it appears',
    );
    return undefined;
  }
  try {
    mkdirSync(`${location.dir}/${LEASES_SUBDIR}`, { recursive: true });
    accessSync(location.dir, constants.W_OK);
    accessSync(`${location.dir}/${LEASES_SUBDIR}`, constants.W_OK);
    return undefined;
  } catch (err) {
    return `${location.dir} cannot be created or written (${errText(err)}); give the proxy user write access, or set gcRootsDir to a directory inside the store's gcroots it may write`;
  }
}

/** The GC socket path, unless it is too long to connect to (then a GC already running may miss new roots; say so). */
function warnIfSocketTooLong(socket: string | undefined, logger: Logger): void {
  if (socket === undefined) return;
  logger.warn(
    { socket },
    'the store GC socket path is too long to connect to; a garbage collection already running when a path is first used may still delete it',
  );
}

export function createGcRoots(config: Config, deps: GcRootsDeps): OwnedGcRoots {
  const logger = deps.logger.child({ component: 'gc-roots' });
  if (!config.sharedStore) {
    throw new ProxyError(Code.INVALID_ARGUMENT, Reasons.CONFIG_INVALID, 'sharedStore is not set; GC roots need it');
  }
  const store: StoreUrl = config.sharedStore;
  const location = rootLocation(store, config.gcRootsDir);
  const offMessage =
    'GC roots are OFF: store paths copied into the shared store are not protected from its garbage collector, and nothing is pruned';
  const metrics = deps.metrics ?? NO_METRICS;
  if (!location.on) {
    logger.warn({ sharedStore: store.url, why: location.why }, offMessage);
    metrics.gcRootsState({ on: false });
    return off(location);
  }
  const problem = prepareDir(location, logger);
  if (problem !== undefined) {
    const why = problem;
    logger.warn({ sharedStore: store.url, why }, offMessage);
    metrics.gcRootsState({ on: false });
    return off({ on: false, why });
  }
  metrics.gcRootsState({ on: true });

  const timings = rootTimings(config);
  warnIfSocketTooLong(location.gcSocketTooLong, logger);
  const gcSocket = location.gcSocket;
  const now = deps.now ?? Date.now;
  const fs = deps.fs ?? nodeRootFs;
  const host = hostname();
  const roots = new GcRoots({
    dir: location.dir,
    mustExist: location.mustExist,
    replica: deps.replica ?? replicaId(host, process.pid, randomBytes(6).toString('hex')),
    host,
    pid: process.pid,
    fs,
    now,
    touchIntervalMs: timings.touchIntervalMs,
    lingerMs: deps.lingerMs ?? timings.lingerMs,
    leaseRefreshMs: deps.leaseRefreshMs ?? LEASE_REFRESH_MS,
    maxHeldPaths: MAX_HELD_PATHS,
    gcSocket,
    logger,
    metrics,
  });
  const runner = deps.runner ?? configuredNixRunner(config);
  const sweeper = new RootSweeper({
    intervalMs: config.rootSweepIntervalMs,
    now,
    logger,
    metrics,
    onSweep: deps.onSweep,
    sweep: (signal) =>
      pruneRoots(
        {
          rootsDir: location.dir,
          store,
          runner,
          fs,
          now,
          logger,
          exists: deps.exists,
          heldHere: () => roots.heldPaths(),
          gcSocket,
        },
        {
          unusedForMs: config.rootRetentionMs,
          budgetBytes: config.rootedSizeBudgetBytes,
          dryRun: false,
          notValidGraceMs: NOT_VALID_GRACE_MS,
          signal,
        },
      ),
  });
  roots.start();
  sweeper.start();
  if (timings.touchClampedFrom !== undefined) {
    logger.info(
      { configured: formatDuration(timings.touchClampedFrom), used: formatDuration(timings.touchIntervalMs) },
      'rootTouchInterval shortened to a quarter of rootRetention, so paths in steady use never look unused',
    );
  }
  logger.info(
    {
      sharedStore: store.url,
      dir: location.dir,
      basis: location.basis,
      retention: formatDuration(config.rootRetentionMs),
      budgetBytes: config.rootedSizeBudgetBytes,
      sweepEvery: config.rootSweepIntervalMs > 0 ? formatDuration(config.rootSweepIntervalMs) : 'never',
      touchInterval: formatDuration(timings.touchIntervalMs),
    },
    'GC roots on',
  );
  return {
    location,
    acquire: (paths) => roots.acquire(paths),
    heldPaths: () => roots.heldPaths(),
    sweep: () => sweeper.sweepNow(),
    close: async () => {
      await sweeper.stop();
      await roots.close();
    },
  };
}
