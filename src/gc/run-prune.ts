/**
 * The `prune` command: one prune of the shared store's GC roots from outside
 * the proxy (cron, an operator), honouring the leases of every running
 * replica, then optionally the store's garbage collector.
 *
 * Wiring (src/cli.ts): `const report = await runPrune({ config, ...commandArgs }, logger);
 * process.stdout.write(formatPruneReport(report, Date.now()))`; exit non-zero
 * when it throws (a ProxyError whose message says what to do).
 */
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { ExistsProbe } from '../store/local-dir-check';
import { configuredNixRunner, type NixRunner } from '../store/nix-command';
import { Reasons } from '../store/shared-store';
import { NOT_VALID_GRACE_MS } from './gc-roots-settings';
import { pruneRoots, type PruneReport } from './prune-roots';
import { errorCode, nodeRootFs, type RootFs } from './root-fs';
import { rootLocation } from './root-location';
import { GC_REASONS } from './roots-dir';
import { collectGarbage } from './store-closures';

export interface PruneOptions {
  /** sharedStore, gcRootsDir, rootedSizeBudgetBytes, nixBinDir, limits.nixCommandTimeoutMs, progressIntervalMs are used. */
  config: Config;
  unusedForMs: number;
  dryRun: boolean;
  /** Run `nix-store --gc` on the shared store afterwards (not in a dry run). */
  gc: boolean;
  signal?: AbortSignal;
  runner?: NixRunner;
  fs?: RootFs;
  now?: () => number;
  exists?: ExistsProbe;
}

export async function runPrune(options: PruneOptions, logger: Logger): Promise<PruneReport> {
  const { config } = options;
  const store = config.sharedStore;
  if (!store)
    throw new ProxyError(Code.INVALID_ARGUMENT, Reasons.CONFIG_INVALID, 'prune needs sharedStore; set --shared-store');
  const location = rootLocation(store, config.gcRootsDir);
  if (!location.on) {
    throw new ProxyError(Code.FAILED_PRECONDITION, GC_REASONS.ROOTS_OFF, `no GC roots to prune: ${location.why}`);
  }
  const fs = options.fs ?? nodeRootFs;
  // The roots directory itself appears with the first root; its parent (the
  // store's gcroots, or gcRootsDir's parent) must be there, or the settings
  // name another store than the proxy uses.
  const parent = dirname(location.dir);
  try {
    await fs.lstat(parent);
  } catch (err) {
    throw new ProxyError(
      Code.FAILED_PRECONDITION,
      GC_REASONS.ROOTS_OFF,
      `${parent} does not exist (${errorCode(err) ?? 'error'}), so ${location.dir} holds no GC roots: --shared-store (or --gc-roots-dir) must name the store the proxy uses`,
    );
  }
  const now = options.now ?? Date.now;
  const runner = options.runner ?? configuredNixRunner(config);
  const signal = options.signal ?? new AbortController().signal;
  const log = logger.child({ component: 'prune' });
  const report = await pruneRoots(
    {
      rootsDir: location.dir,
      store,
      runner,
      fs,
      now,
      logger: log,
      exists: options.exists,
      gcSocket: location.gcSocket,
    },
    {
      unusedForMs: options.unusedForMs,
      budgetBytes: config.rootedSizeBudgetBytes,
      dryRun: options.dryRun,
      notValidGraceMs: NOT_VALID_GRACE_MS,
      signal,
    },
  );
  if (options.gc && !options.dryRun) {
    log.info({ store: store.url }, "running the shared store's garbage collector");
    report.gc = await collectGarbage(
      { store, runner, logger: log, exists: options.exists },
      signal,
      config.progressIntervalMs,
    );
  }
  return report;
}
