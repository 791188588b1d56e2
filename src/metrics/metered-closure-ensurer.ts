import type { ClosureEnsurer, EnsureReport } from '../store/closure-ensurer';
import type { Metrics } from './metrics';

/**
 * Reports how many of each ensure()'s paths the positive validity cache
 * answered (hits) and how many had to be asked of the store (misses). Wrap
 * the outermost ensurer, whose report has `cachedValid`. Failed ensures are
 * not counted here; the Execute side reports them. Changes nothing about the
 * calls.
 */
export class MeteredClosureEnsurer implements ClosureEnsurer {
  constructor(
    private readonly inner: ClosureEnsurer,
    private readonly metrics: Metrics,
  ) {}

  async ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    const report = await this.inner.ensure(paths, signal);
    this.metrics.cacheLookups('validity', report.cachedValid, report.requested - report.cachedValid);
    return report;
  }
}
