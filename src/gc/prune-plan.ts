/**
 * Deciding which GC roots a prune drops. Pure: the caller lists the roots,
 * reads the leases and asks Nix for validity and path info; this only decides.
 *
 * Rules, in order:
 * 1. A root whose path a running action needs (leased) is never dropped.
 * 2. A root to a path that is not valid keeps nothing alive; it is dropped
 *    once older than a grace period (younger ones may be roots made just
 *    before a copy that is still running) or than `unusedForMs`.
 * 3. A root unused for at least `unusedForMs` is dropped.
 * 4. With a budget, the remaining roots are kept most recently used first
 *    while the union of their closures (shared paths counted once) fits; the
 *    first root that does not fit, and every root used before it, is dropped.
 *    That is exactly "drop least recently used roots until the rest fits".
 *    Leased roots are counted first and kept even when they alone exceed the
 *    budget (reported as overBudgetBytes).
 */
import { ClosureUnion, unionNarBytes } from './closure-union';
import type { PathInfo } from './path-info-json';

export interface RootRecord {
  path: string;
  /** The root's mtime: when an action last used the path (to the touch interval). */
  lastUsedMs: number;
}

export type DropReason = 'unused' | 'over-budget' | 'not-valid';

export interface PlannedDrop extends RootRecord {
  reason: DropReason;
}

export interface PlanInput {
  roots: readonly RootRecord[];
  leased: ReadonlySet<string>;
  /** Root paths valid on the store. */
  valid: ReadonlySet<string>;
  /** Path info for the closures of the valid roots. */
  info: ReadonlyMap<string, PathInfo>;
  nowMs: number;
  unusedForMs?: number;
  budgetBytes?: number;
  notValidGraceMs: number;
}

export interface PrunePlan {
  drops: PlannedDrop[];
  /** Roots kept. */
  kept: number;
  /** Of the kept roots, those that rule 2 or 3 would have dropped but a running action holds. */
  keptForLeases: number;
  rootedBytesBefore: number;
  rootedBytesAfter: number;
  /** With a budget: how far the closures of leased roots alone exceed it (they are kept anyway); 0 when they fit. */
  overBudgetBytes: number;
}

/** Most recently used first; ties by path so plans are deterministic. */
function byRecency(a: RootRecord, b: RootRecord): number {
  return b.lastUsedMs - a.lastUsedMs || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

export function planPrune(input: PlanInput): PrunePlan {
  const { roots, leased, valid, info, nowMs } = input;
  const drops: PlannedDrop[] = [];
  const remaining: RootRecord[] = [];
  let keptForLeases = 0;

  for (const root of roots) {
    const age = nowMs - root.lastUsedMs;
    const reason: DropReason | undefined = !valid.has(root.path)
      ? age >= Math.min(input.notValidGraceMs, input.unusedForMs ?? Infinity)
        ? 'not-valid'
        : undefined
      : input.unusedForMs !== undefined && age >= input.unusedForMs
        ? 'unused'
        : undefined;
    if (reason && leased.has(root.path)) keptForLeases++;
    if (reason && !leased.has(root.path)) drops.push({ ...root, reason });
    else remaining.push(root);
  }

  const validRoots = roots.filter((r) => valid.has(r.path)).map((r) => r.path);
  const rootedBytesBefore = unionNarBytes(validRoots, info);
  let overBudgetBytes = 0;
  let rootedBytesAfter: number;

  if (input.budgetBytes === undefined) {
    rootedBytesAfter = unionNarBytes(
      remaining.filter((r) => valid.has(r.path)).map((r) => r.path),
      info,
    );
  } else {
    const budget = input.budgetBytes;
    const union = new ClosureUnion(info);
    for (const r of remaining) if (leased.has(r.path) && valid.has(r.path)) union.add(r.path);
    overBudgetBytes = Math.max(0, union.narBytes - budget);
    const candidates = remaining.filter((r) => !leased.has(r.path)).sort(byRecency);
    let full = false;
    for (const r of candidates) {
      if (!valid.has(r.path)) continue; // young roots to paths being copied: they hold nothing yet
      if (!full && union.addIfWithin(r.path, budget)) continue;
      full = true;
      drops.push({ ...r, reason: 'over-budget' });
    }
    rootedBytesAfter = union.narBytes;
  }

  drops.sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.path < b.path ? -1 : 1));
  return {
    drops,
    kept: roots.length - drops.length,
    keptForLeases,
    rootedBytesBefore,
    rootedBytesAfter,
    overBudgetBytes,
  };
}
