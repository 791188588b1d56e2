/**
 * One prune of the roots directory: list roots, read leases, ask Nix for
 * validity and closure sizes, plan (prune-plan.ts), then drop.
 *
 * Dropping is where a prune meets running actions (gc-roots.ts has their
 * side). Leases are read again right before unlinking (planning may take
 * seconds on a big store) and once more after; a root that became leased in
 * between is re-created at once, and a root whose mtime moved since it was
 * listed (a replica used it) is left alone. An action's acquire writes its
 * lease before it touches or creates the root, so either the prune sees the
 * lease, or the acquire sees the unlinked root and makes it again.
 *
 * Residual window, by design: between the unlink and the re-creation of a
 * root that became leased meanwhile (microseconds), a `nix-store --gc`
 * started elsewhere at that very moment could see the path unrooted. The
 * prune command runs its own GC only after the prune has finished.
 */
import type { Logger } from 'pino';
import type { ExistsProbe } from '../store/local-dir-check';
import type { NixRunner } from '../store/nix-command';
import type { StoreUrl } from '../store/store-url';
import { unionNarBytes } from './closure-union';
import type { GcSummary } from './gc-output';
import { tellRunningGc } from './gc-socket';
import { MAX_LEASE_TTL_MS } from './lease-file';
import { planPrune, type PlannedDrop } from './prune-plan';
import type { RootFs } from './root-fs';
import { dropRoot, ensureRoot, listRoots, readLeases, type LeaseReading } from './roots-dir';
import { queryRootClosures } from './store-closures';

/** Roots one prune handles; a directory with more is refused rather than read into memory. */
export const DEFAULT_MAX_ROOTS = 1_000_000;

export interface PruneContext {
  rootsDir: string;
  store: StoreUrl;
  runner: NixRunner;
  fs: RootFs;
  now: () => number;
  logger: Logger;
  exists?: ExistsProbe;
  /** Paths this process itself holds, on top of what the lease files say. */
  heldHere?: () => ReadonlySet<string>;
  maxRoots?: number;
  /** The store's GC socket: restored roots are announced to a GC already running. */
  gcSocket?: string;
}

export interface PruneRequest {
  /** Drop roots unused for at least this long; undefined = no age rule. */
  unusedForMs?: number;
  /** Keep the rooted closures under this many NAR bytes; undefined = no budget. */
  budgetBytes?: number;
  dryRun: boolean;
  /** Roots to paths that are not valid are dropped only when older than this (a copy may be under way). */
  notValidGraceMs: number;
  signal: AbortSignal;
}

export interface PruneReport {
  store: string;
  rootsDir: string;
  dryRun: boolean;
  unusedForMs?: number;
  budgetBytes?: number;
  startedAtMs: number;
  durationMs: number;
  rootsBefore: number;
  rootsAfter: number;
  /** Dropped (or, in a dry run, would be dropped), least recently used first. */
  dropped: PlannedDrop[];
  /** Planned drops left alone because a running action needed the path by the time of unlinking. */
  spared: Array<{ path: string; why: 'leased' | 'used-meanwhile' }>;
  /** Dropped, then leased by a replica before the prune finished: made again. */
  restored: string[];
  /** Roots the age or validity rule would drop but a running action holds. */
  keptForLeases: number;
  leases: { live: number; stale: number };
  /** Entries in the roots directory that the proxy did not make (left alone). */
  foreign: number;
  rootedBytesBefore: number;
  rootedBytesAfter: number;
  /** With a budget: how far the closures held by running actions alone exceed it. */
  overBudgetBytes: number;
  /** Present when the store's garbage collector ran after the prune. */
  gc?: GcSummary;
}

/** Lease files stale for longer than any lease lives belong to replicas that are gone. */
async function removeOldLeases(ctx: PruneContext, reading: LeaseReading, log: Logger): Promise<void> {
  for (const { file, ageMs } of reading.stale) {
    if (!(Number.isNaN(ageMs) || ageMs > MAX_LEASE_TTL_MS)) continue;
    try {
      await ctx.fs.unlink(file);
      log.info({ file }, 'prune: removed the lease of a replica that is gone');
    } catch (err) {
      log.warn({ err, file }, 'prune: could not remove an old lease file');
    }
  }
}

function union(a: ReadonlySet<string>, b: ReadonlySet<string> | undefined): ReadonlySet<string> {
  if (!b || b.size === 0) return a;
  const out = new Set(a);
  for (const p of b) out.add(p);
  return out;
}

async function leasedNow(ctx: PruneContext): Promise<{ reading: LeaseReading; leased: ReadonlySet<string> }> {
  const reading = await readLeases(ctx.fs, ctx.rootsDir, ctx.now());
  return { reading, leased: union(reading.leased, ctx.heldHere?.()) };
}

export async function pruneRoots(ctx: PruneContext, req: PruneRequest): Promise<PruneReport> {
  const startedAtMs = ctx.now();
  const log = ctx.logger.child({ rootsDir: ctx.rootsDir, dryRun: req.dryRun });
  const listing = await listRoots(ctx.fs, ctx.rootsDir, ctx.maxRoots ?? DEFAULT_MAX_ROOTS);
  const first = await leasedNow(ctx);
  log.info(
    { roots: listing.roots.length, leased: first.leased.size, liveLeases: first.reading.live.length },
    'prune: roots listed',
  );
  const { valid, info } = await queryRootClosures(
    { store: ctx.store, runner: ctx.runner, logger: log, exists: ctx.exists },
    listing.roots.map((r) => r.path),
    req.signal,
  );
  const plan = planPrune({
    roots: listing.roots,
    leased: first.leased,
    valid,
    info,
    nowMs: ctx.now(),
    unusedForMs: req.unusedForMs,
    budgetBytes: req.budgetBytes,
    notValidGraceMs: req.notValidGraceMs,
  });

  const dropped: PlannedDrop[] = [];
  const spared: PruneReport['spared'] = [];
  const restored: string[] = [];
  if (req.dryRun) {
    dropped.push(...plan.drops);
  } else if (plan.drops.length > 0) {
    const before = await leasedNow(ctx);
    for (const d of plan.drops) {
      req.signal.throwIfAborted();
      if (before.leased.has(d.path)) {
        spared.push({ path: d.path, why: 'leased' });
        continue;
      }
      const r = await dropRoot(ctx.fs, ctx.rootsDir, d.path, d.lastUsedMs);
      if (r === 'used-meanwhile') spared.push({ path: d.path, why: 'used-meanwhile' });
      else dropped.push(d);
    }
    const after = await leasedNow(ctx);
    for (const d of dropped) {
      if (!after.leased.has(d.path)) continue;
      await ensureRoot(ctx.fs, { dir: ctx.rootsDir, mustExist: ctx.rootsDir }, d.path, ctx.now(), 0);
      restored.push(d.path);
    }
    if (restored.length > 0) {
      if (ctx.gcSocket) await tellRunningGc(ctx.gcSocket, restored, 60_000);
      log.info({ restored: restored.length }, 'prune: re-created roots that running actions took meanwhile');
    }
  }
  if (!req.dryRun) await removeOldLeases(ctx, first.reading, log);

  const gone = new Set(dropped.map((d) => d.path));
  for (const p of restored) gone.delete(p);
  const rootedBytesAfter =
    req.dryRun || (spared.length === 0 && restored.length === 0)
      ? plan.rootedBytesAfter
      : unionNarBytes(
          listing.roots.filter((r) => valid.has(r.path) && !gone.has(r.path)).map((r) => r.path),
          info,
        );
  const report: PruneReport = {
    store: ctx.store.url,
    rootsDir: ctx.rootsDir,
    dryRun: req.dryRun,
    unusedForMs: req.unusedForMs,
    budgetBytes: req.budgetBytes,
    startedAtMs,
    durationMs: ctx.now() - startedAtMs,
    rootsBefore: listing.roots.length,
    rootsAfter: listing.roots.length - (req.dryRun ? dropped.length : gone.size),
    dropped: req.dryRun ? dropped : dropped.filter((d) => gone.has(d.path)),
    spared,
    restored,
    keptForLeases: plan.keptForLeases,
    leases: { live: first.reading.live.length, stale: first.reading.stale.length },
    foreign: listing.foreign.length,
    rootedBytesBefore: plan.rootedBytesBefore,
    rootedBytesAfter,
    overBudgetBytes: plan.overBudgetBytes,
  };
  log.info(
    {
      rootsBefore: report.rootsBefore,
      rootsAfter: report.rootsAfter,
      dropped: report.dropped.length,
      spared: spared.length,
      restored: restored.length,
      rootedBytesBefore: report.rootedBytesBefore,
      rootedBytesAfter: report.rootedBytesAfter,
      ms: report.durationMs,
    },
    req.dryRun ? 'prune (dry run) finished' : 'prune finished',
  );
  if (report.overBudgetBytes > 0) {
    log.warn(
      { budgetBytes: req.budgetBytes, overBudgetBytes: report.overBudgetBytes },
      'closures held by running actions alone exceed the rooted size budget; they are kept',
    );
  }
  return report;
}
