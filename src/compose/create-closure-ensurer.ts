/**
 * The one place that turns configuration into the store side's objects,
 * outermost first:
 *
 *   MeteredClosureEnsurer                   always
 *    └ RootingEnsurer                       deps.leases set (src/gc)
 *       └ ValidityCachingEnsurer            cache.validityTtlMs > 0
 *          └ VisibilityWaitingEnsurer       visibleAt set
 *             └ CheckingEnsurer             findInvalid, then realise
 *                ├ store:    BoundedChecks → RetryingWrites → SerialisedWrites → MeteredSharedStore → NixCliSharedStore
 *                └ realiser: ClientLimitedRealiser (limits.client* set and deps.currentClient)
 *                             → ImportAwaitingRealiser (deps.imports: the binary cache's imports)
 *                             → MeteredRealiser → SingleFlightRealiser
 *                             → SourceOrderRealiser(store, NixCliPathSource per substituter)
 *
 * The RootingEnsurer gives every ensured path its GC root before the
 * validity check, so a copy is never unrooted, and a path that is valid
 * already (kept alive by someone else's root) is rooted too. Rooting at
 * copyFrom alone would miss those.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { ProxyError } from '../errors';
import type { PathLeases } from '../gc/path-leases';
import { RootingEnsurer } from '../gc/rooting-ensurer';
import { Code } from '../reapi/grpc-status';
import { BoundedChecks } from '../store/bounded-checks';
import { CheckingEnsurer } from '../store/checking-ensurer';
import { ClientLimitedRealiser } from '../store/client-limited-realiser';
import type { ClosureEnsurer, EnsureReport } from '../store/closure-ensurer';
import type { ExistsProbe } from '../store/local-dir-check';
import { NixCliPathSource, NixCliSharedStore } from '../store/nix-cli-store';
import { configuredNixRunner, type NixRunner } from '../store/nix-command';
import { RetryingWrites } from '../store/retrying-writes';
import { SerialisedWrites } from '../store/serialised-writes';
import { closureNarBytes, registeredBytes } from '../store/registered-bytes';
import { Reasons, type Realiser, type SharedStore } from '../store/shared-store';
import { ImportAwaitingRealiser } from '../store/import-awaiting-realiser';
import type { ImportsInFlight } from '../store/imports-in-flight';
import { SingleFlightRealiser } from '../store/single-flight-realiser';
import { SourceOrderRealiser } from '../store/source-order-realiser';
import { ValidityCachingEnsurer } from '../store/validity-caching-ensurer';
import { MeteredClosureEnsurer } from '../metrics/metered-closure-ensurer';
import { MeteredRealiser } from '../metrics/metered-realiser';
import { MeteredSharedStore } from '../metrics/metered-shared-store';
import { NO_METRICS, type Metrics } from '../metrics/metrics';
import { VisibilityWaitingEnsurer } from '../store/visibility-waiting-ensurer';

export interface ClosureEnsurerDeps {
  logger: Logger;
  /** Replaces the process runner (tests count and fault-inject spawns through it). */
  runner?: NixRunner;
  /** Replaces the file-existence probe used for local store directories and visibleAt. */
  exists?: ExistsProbe;
  /** Validity checks running at once; default 8. */
  maxConcurrentChecks?: number;
  /** Positive validity cache size; default 200 000 paths. */
  validityCacheEntries?: number;
  /** Where validity checks, realisations and single-flight joins are counted; a no-op when absent. */
  metrics?: Metrics;
  /** Backoff before the first write retry; default 200 ms. */
  retryBaseDelayMs?: number;
  /** GC roots (createGcRoots): every ensured path is rooted and held while it is ensured. */
  leases?: PathLeases;
  /** Whom the current call is for (src/server/auth/client-scope); needed for limits.client* to apply. */
  currentClient?: () => string | undefined;
  /** Paths the binary cache is importing: a realisation waits for them before asking substituters. */
  imports?: ImportsInFlight;
}

/** A ClosureEnsurer that owns background work: `close()` stops running realisations (at shutdown). */
export interface OwnedClosureEnsurer extends ClosureEnsurer {
  close(): void;
  /** The shared store with its write decorators (bounded checks, retries, one write at a time): the binary cache imports through it. */
  readonly store: SharedStore;
}

export function createClosureEnsurer(config: Config, deps: ClosureEnsurerDeps): OwnedClosureEnsurer {
  if (!config.sharedStore) {
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      Reasons.CONFIG_INVALID,
      'sharedStore is not set; the store side needs it',
    );
  }
  // Parsed and checked by loadConfig (src/config); nothing here re-checks them.
  const shared = config.sharedStore;
  const substituters = config.substituters;

  const logger = deps.logger.child({ component: 'nix-store' });
  const metrics = deps.metrics ?? NO_METRICS;
  const runner = deps.runner ?? configuredNixRunner(config);
  const backend = new NixCliSharedStore({
    store: shared,
    runner,
    requireSigs: config.requireSigs,
    trustedPublicKeys: config.trustedPublicKeys,
    logger,
    progressIntervalMs: config.progressIntervalMs,
    exists: deps.exists,
  });
  const store: SharedStore = new BoundedChecks(
    new RetryingWrites(new SerialisedWrites(new MeteredSharedStore(backend, metrics)), {
      retries: config.limits.realiseRetries,
      baseDelayMs: deps.retryBaseDelayMs,
      logger,
    }),
    deps.maxConcurrentChecks ?? 8,
  );
  const sources = substituters.map((s) => new NixCliPathSource({ store: s, runner, exists: deps.exists }));
  const lifetime = new AbortController();
  const realiser = new MeteredRealiser(
    new SingleFlightRealiser(new SourceOrderRealiser(store, sources, logger), {
      maxConcurrent: config.limits.concurrentRealisations,
      lifetime: lifetime.signal,
      logger,
    }),
    metrics,
  );

  const { clientConcurrentRealisations, clientRealisedBytesPerHour } = config.limits;
  let limited: Realiser = deps.imports ? new ImportAwaitingRealiser(realiser, deps.imports, logger) : realiser;
  if (deps.currentClient && (clientConcurrentRealisations !== undefined || clientRealisedBytesPerHour !== undefined)) {
    limited = new ClientLimitedRealiser(limited, {
      limits: {
        concurrentRealisations: clientConcurrentRealisations,
        realisedBytesPerHour: clientRealisedBytesPerHour,
      },
      currentClient: deps.currentClient,
      measure: (paths, sinceMs) => registeredBytes(runner, shared.url, paths, sinceMs, lifetime.signal),
      estimate: (paths, signal) =>
        closureNarBytes(
          runner,
          substituters.map((s) => s.url),
          paths,
          signal,
        ),
      lifetime: lifetime.signal,
      logger,
    });
  }

  let ensurer: ClosureEnsurer = new CheckingEnsurer(store, limited, logger);
  if (config.visibleAt !== undefined) {
    ensurer = new VisibilityWaitingEnsurer(ensurer, {
      visibleAt: config.visibleAt.replace(/\/+$/, '') || '/',
      timeoutMs: config.visibleTimeoutMs,
      exists: deps.exists,
    });
  }
  if (config.cache.validityTtlMs > 0) {
    ensurer = new ValidityCachingEnsurer(ensurer, {
      ttlMs: config.cache.validityTtlMs,
      maxEntries: deps.validityCacheEntries ?? 200_000,
      maxBytes: config.cache.validityBytes,
    });
  }
  if (deps.leases) ensurer = new RootingEnsurer(ensurer, deps.leases);
  ensurer = new MeteredClosureEnsurer(ensurer, metrics);
  logger.info(
    {
      sharedStore: shared.url,
      substituters: substituters.map((s) => s.url),
      visibleAt: config.visibleAt,
      requireSigs: config.requireSigs,
    },
    'closure ensurer ready',
  );
  const outer = ensurer;
  return {
    ensure: (paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> => outer.ensure(paths, signal),
    close: () => lifetime.abort(),
    store,
  };
}
