/**
 * ClosureEnsurer decorator: every path the proxy ensures is rooted and held
 * for the duration of the ensure, whether it turns out to be missing (the
 * root then exists before the copy starts) or already valid (a path valid
 * only because some other root or a previous copy left it there is rooted
 * now, so the store host's GC cannot take it from under the action).
 *
 * It sits outermost, above the validity cache, so cache hits are held too;
 * held paths cost no I/O. The Execute path should additionally hold its own
 * lease until the action has finished (see PathLeases), which this decorator
 * cannot know.
 */
import type { ClosureEnsurer, EnsureReport } from '../store/closure-ensurer';
import type { PathLeases } from './path-leases';

export class RootingEnsurer implements ClosureEnsurer {
  constructor(
    private readonly inner: ClosureEnsurer,
    private readonly leases: PathLeases,
  ) {}

  async ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    const lease = await this.leases.acquire(paths);
    try {
      return await this.inner.ensure(paths, signal);
    } finally {
      lease.release();
    }
  }
}
