/**
 * Most Executes reference paths that were valid a moment ago. This decorator
 * remembers, for `ttlMs`, paths a successful ensure made valid (and visible),
 * so repeat calls skip the Nix process entirely. It never remembers a path as
 * invalid: a missing path must be looked at again on the next call. The cost
 * of the TTL: a path garbage-collected from the shared store is believed
 * valid until its entry expires. GC roots prevent that: the RootingEnsurer
 * above this cache roots every path of every ensure, cache hits included,
 * before the check or copy (see create-closure-ensurer.ts).
 */
import { LRUCache } from 'lru-cache';
import type { ClosureEnsurer, EnsureReport } from './closure-ensurer';

export interface ValidityCacheOptions {
  ttlMs: number;
  maxEntries: number;
  /** Heap bytes the cache may hold (store paths are ASCII: one byte a character, plus a slot). */
  maxBytes?: number;
}

export class ValidityCachingEnsurer implements ClosureEnsurer {
  private readonly valid: LRUCache<string, true>;

  constructor(
    private readonly inner: ClosureEnsurer,
    o: ValidityCacheOptions,
  ) {
    this.valid = new LRUCache<string, true>({
      max: o.maxEntries,
      maxSize: Math.max(1024, o.maxBytes ?? 16 * 1024 * 1024),
      sizeCalculation: (_v, path) => 64 + path.length,
      ttl: o.ttlMs,
      ttlAutopurge: false,
    });
  }

  async ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    const distinct = [...new Set(paths)];
    const unknown = distinct.filter((p) => !this.valid.has(p));
    const cached = distinct.length - unknown.length;
    if (unknown.length === 0) {
      return {
        requested: distinct.length,
        cachedValid: cached,
        missing: [],
        realised: [],
        joined: 0,
        checkMs: 0,
        realiseMs: 0,
        visibleWaitMs: 0,
      };
    }
    const report = await this.inner.ensure(unknown, signal);
    for (const p of unknown) this.valid.set(p, true);
    return { ...report, requested: distinct.length, cachedValid: report.cachedValid + cached };
  }

  /** Entries currently remembered (for tests and metrics). */
  get size(): number {
    return this.valid.size;
  }
}
